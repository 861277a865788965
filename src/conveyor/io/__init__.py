"""File primitives every store uses: atomic writes, content hashes and the stat cache."""
