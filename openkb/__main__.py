from openkb.cli.app import main

main()
