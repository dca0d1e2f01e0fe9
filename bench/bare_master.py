"""A bare mitmproxy Master in reverse mode, set up as `privproxy run` sets up its own (the same mitmproxy addons, hook
dispatch, logging, event loop and retired type check) without privproxy's addons. bench/proxy_vs_mitmdump.py
--floor runs it: the most any addon on mitmproxy's core could serve.

    python bench/bare_master.py reverse:http://127.0.0.1:8080@127.0.0.1:8443 CONFDIR
"""

from __future__ import annotations

import sys


async def serve(mode: str, confdir: str) -> None:
    from mitmproxy import master, options
    from mitmproxy.addons import core, errorcheck, next_layer, proxyserver, tlsconfig

    from privproxy.cli.run import setup_logging
    from privproxy.mitm import internals
    from privproxy.mitm.dispatch import DirectAddonManager

    setup_logging(False)
    internals.skip_message_typecheck()
    opts = options.Options()
    m = master.Master(opts)
    m.addons = DirectAddonManager(m)
    m.addons.add(core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
                 errorcheck.ErrorCheck())
    opts.update(mode=[mode], confdir=confdir, connection_strategy="lazy")
    await m.run()


if __name__ == "__main__":
    from privproxy.cli.run import event_loop_runner

    event_loop_runner()(serve(sys.argv[1], sys.argv[2]))
