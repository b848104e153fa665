from fmtune.cli import main

main()
