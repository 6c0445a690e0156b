"""The ``fastdyn`` command line."""
import argparse


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastdyn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="backends and build status")
    args = parser.parse_args(argv)
    if args.command == "info":
        import fastdyn

        print("backends:", fastdyn.available_backends(verbose=True))
        print("build:", fastdyn.build_status())
    return 0
