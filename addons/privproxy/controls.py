"""[report] The controls C1-C15: what the privacy policies promise and the clauses each promise comes from.

The same table as shared/policies/CONTROLS.md; filters.yaml rules name these ids in `controls:`.
"""

from __future__ import annotations

CONTROLS: dict[str, tuple[str, str]] = {
    "C1": ("Transport is encrypted: plain HTTP is redirected to HTTPS, HSTS is sent, cookies get Secure, "
           "TLS below 1.2 is refused", "000 §7; 001 §7.2"),
    "C2": ("Access logs are statistical and cannot identify a person: client IPs truncated, identifier "
           "cookies and parameters removed or pseudonymized with a key destroyed on rotation",
           "001 §9.2.1; 000 §7; 002 (cookies)"),
    "C3": ("Logs stay useful for running the web servers: status, timings, method, path without personal "
           "data, request id, coarse geography", "001 §9.2.2"),
    "C4": ("Cookie identifiers are not used to identify visitors: analytics and tracking cookie values never "
           "reach logs or third-party beacons in the clear", "000 §7; 001 §8.2.2; 002 (use of cookies)"),
    "C5": ("Linkage with a person only for registered members who consented: a signed, unexpired consent "
           "lets identifiers through, into a separate linked log", "001 §1, §8.2.3, §9.2.3"),
    "C6": ("Third-party analytics receive no identifiers and no full IP address without that consent",
           "001 §7.3; 000 §4; 004 (provision to third parties)"),
    "C7": ("The items kept in anonymously processed information, and how each is processed, are published "
           "(this report)", "001 §6; 003 (anonymously processed information)"),
    "C8": ("IP addresses and cookie identifiers are treated as personal information wherever they appear",
           "004 (definition of personal information)"),
    "C9": ("Automatic acquisition is kept to the minimum: client port dropped, user agent generalized, "
           "screen size coarsened", "004 (automatic acquisition)"),
    "C10": ("Special-care information is not acquired through analytics: URLs of sensitive pages are "
            "generalized before they reach logs or beacons", "000 §1; 004 (specific information)"),
    "C11": ("Data is disposed of when its purpose is met: log retention, pseudonymization keys destroyed on "
            "schedule", "004 (disposal)"),
    "C12": ("Requests for disclosure, correction, deletion and suspension can be served: a member's linked "
            "records are exported or erased", "000 §5; 002; 003 (disclosure); 004 (GDPR Art. 20)"),
    "C13": ("A visitor's refusal is respected: Global Privacy Control, Do Not Track and withdrawal override "
            "linkage", "004 (use of cookie; CCPA); 002"),
    "C14": ("Transfers abroad can be governed: rules can depend on the visitor's coarse region",
            "004 (provision to abroad)"),
    "C15": ("No unauthorized access or leakage through the proxy itself: forged consent and spoofed forwarding "
            "headers are refused, metrics are not public, no personal data in metric labels",
            "000 §3; 004 (security measures)"),
}
