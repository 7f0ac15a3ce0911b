from meshward.cli import main

main()
