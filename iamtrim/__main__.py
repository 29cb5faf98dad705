from iamtrim.cli import main

main()
