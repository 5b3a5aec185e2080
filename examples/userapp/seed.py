"""Put sample customers, some with untidy emails: ``python seed.py 500 [--namespace NS]``."""

import argparse

from google.cloud import ndb

from models import Customer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("count", type=int)
    parser.add_argument("--namespace", default="")
    args = parser.parse_args()
    customers = [
        Customer(
            name=f"customer {i}",
            # Every third email has capitals and a trailing space; every fifth customer is inactive.
            email=f" C{i}@Example.COM " if i % 3 == 0 else f"c{i}@example.com",
            active=i % 5 != 0,
        )
        for i in range(args.count)
    ]
    with ndb.Client(namespace=args.namespace).context():
        for start in range(0, len(customers), 500):
            ndb.put_multi(customers[start : start + 500])
    print(f"put {len(customers)} customers")


if __name__ == "__main__":
    main()
