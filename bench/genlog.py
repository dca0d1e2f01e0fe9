"""A reproducible Combined Log with the identifiers real sites see: python bench/genlog.py N [--spellings] > log"""

from __future__ import annotations

import random
import sys
import time

PAGES = ["/", "/products", "/products/watch-{n}", "/search?q={w}&page={p}", "/cart", "/news/{n}",
         "/health/clinic-{n}", "/recruit/apply/{n}", "/static/app.{n}.js", "/img/{n}.webp", "/support/faq"]
TRACKING = ["gclid=EAIaIQob{r}", "fbclid=IwAR{r}", "utm_source=news&utm_medium=email", "uid={r}",
            "email=user{n}%40example.com", "tel=090-{a}-{b}", "sessionid={r}", "ref=home", ""]
WORDS = ["watch", "casio", "g-shock", "solar", "band", "battery"]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0",
    "curl/8.{v}.0",
]
REFERRERS = ["-", "https://www.google.com/search?q={w}", "https://shop.example/products?gclid=EAIa{r}",
             "https://mail.example/read?email=user{n}%40example.com"]


def line(rng: random.Random, ts: float) -> str:
    n = rng.randrange(5000)
    if rng.random() < 0.15:
        ip = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    else:
        ip = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    fill = {"n": n, "w": rng.choice(WORDS), "p": rng.randrange(1, 9), "r": rng.randrange(10**9),
            "a": rng.randrange(1000, 9999), "b": rng.randrange(1000, 9999), "v": rng.randrange(100, 130)}
    path = rng.choice(PAGES).format(**fill)
    extra = rng.choice(TRACKING).format(**fill)
    if extra:
        path += ("&" if "?" in path else "?") + extra
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(ts))
    status, size = rng.choice([200, 200, 200, 304, 404]), rng.randrange(100, 90000)  # the draws' order as before
    referrer, agent = rng.choice(REFERRERS).format(**fill), rng.choice(AGENTS).format(**fill)
    return f'{ip} - - [{when}] "GET {path} HTTP/1.1" {status} {size} "{referrer}" "{agent}"'


# --spellings: one line in eight as issue 17 found them: identifier names in other spelling styles with the
# value copied into another parameter (an echo), paths nginx reads as another path, session ids as ;params.
SPELLED = ["/p?userId={r}&e_n=$device:{r}", "/search?q={w}&user[id]=m{r}&label=m{r}", "//products/watch-{n}",
           "/./news/{n}?UID={r}&ref=x-{r}", "/cart;jsessionid={r}ABCDEF", "/products?user_id={r}&next=%2Fp%3Fr%3D{r}"]


def spelled(rng: random.Random, base: str) -> str:
    fill = {"n": rng.randrange(5000), "w": rng.choice(WORDS), "r": rng.randrange(10**8, 10**9)}
    fields = base.split('"')
    fields[1] = f"GET {rng.choice(SPELLED).format(**fill)} HTTP/1.1"
    return '"'.join(fields)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--spellings"]
    count = int(args[0]) if args else 200_000
    rng = random.Random(20261122)
    other = random.Random(17) if "--spellings" in sys.argv[1:] else None  # the default log stays as it was
    ts = 1795000000.0
    out = sys.stdout
    for i in range(count):
        text = line(rng, ts + i * 0.05)
        if other is not None and other.random() < 0.125:
            text = spelled(other, text)
        out.write(text + "\n")


if __name__ == "__main__":
    main()
