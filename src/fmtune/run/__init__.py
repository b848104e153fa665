"""The run of one experiment: the coordinator, the workers, the local launcher, the budget and the
state writer. It drives the search engine (``fmtune.tuning``) and the training stack below it."""
