"""A bare mitmproxy Master in reverse mode, set up as `privproxy run` sets up its own (the same mitmproxy addons, hook
dispatch, logging, event loop and retired type check) without privproxy's addons. bench/proxy_vs_mitmdump.py
--floor runs it: the most any addon on mitmproxy's core could serve.

    python bench/bare_master.py reverse:http://127.0.0.1:8080@127.0.0.1:8443 CONFDIR
"""

from __future__ import annotations

import sys


async def serve(mode: str, confdir: str) -> None:
    from privproxy.cli.run import proxy_master

    m, opts = proxy_master(False)
    opts.update(mode=[mode], confdir=confdir, connection_strategy="lazy")
    await m.run()


if __name__ == "__main__":
    from privproxy.cli.run import event_loop_runner

    event_loop_runner()(serve(sys.argv[1], sys.argv[2]))
