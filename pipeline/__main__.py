import sys

from pipeline.cli import main
from pipeline.process_gc import skip_collection_at_exit

code = main()
skip_collection_at_exit()
sys.exit(code)
