"""Start shardkv: ``python main.py --shards 4`` (see ``--help``)."""

import sys

from shardkv.supervisor import main

if __name__ == "__main__":
    sys.exit(main())
