from chatkeep.cli import main

main()
