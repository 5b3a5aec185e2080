"""The shop's data migrations, applied in order by
``mapper migrate --package examples.shop.migrations``."""
