from labhooks.cli import main

main()
