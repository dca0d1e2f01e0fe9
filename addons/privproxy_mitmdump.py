"""The `mitmdump -s` entry point: mitmdump -s addons/privproxy_mitmdump.py --mode reverse:URL@PORT."""

import privproxy.mitm

addons = [privproxy.mitm.addon()]
