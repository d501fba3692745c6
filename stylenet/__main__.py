from stylenet.cli import main

main()
