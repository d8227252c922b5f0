from advgen.cli import main

main(prog_name="advgen")
