"""``python -m mapper``: the CLI entry point."""

from mapper.cli.main import main

if __name__ == "__main__":
    main(prog_name="python -m mapper")
