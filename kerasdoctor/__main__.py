"""`python -m kerasdoctor`: the same CLI as the `kerasdoctor` command."""

from kerasdoctor.cli import main

if __name__ == "__main__":
    main()
