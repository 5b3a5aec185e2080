"""Write the previous release's data: ``python -m examples.shop.seed [--namespace NS] [N]``."""

from __future__ import annotations

import argparse

from google.cloud import datastore


def seed(client: datastore.Client, members: int = 30, products: int = 20) -> None:
    """Members without ``email_domain``, products with ``price``, one country already there."""
    entities = []
    for i in range(members):
        member = datastore.Entity(client.key("Member", i + 1))
        member.update({"name": f"member {i}", "email": f"m{i}@{('a.example', 'b.example')[i % 2]}"})
        entities.append(member)
    for i in range(products):
        product = datastore.Entity(client.key("Product", i + 1))
        product.update({"name": f"product {i}", "price": 100 * (i + 1)})
        entities.append(product)
    country = datastore.Entity(client.key("Country", 5001))
    country.update({"code": "FR", "name": "France"})
    entities.append(country)
    client.put_multi(entities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", default=None)
    parser.add_argument("members", nargs="?", type=int, default=30)
    args = parser.parse_args()
    seed(datastore.Client(namespace=args.namespace), args.members)
    print(f"seeded {args.members} members, 20 products, 1 country")


if __name__ == "__main__":
    main()
