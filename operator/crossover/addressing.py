"""Address maps: where to connect for an address a cluster reports. Identity in production; in the lab, pod IPs
(which the API server requires to be routable, non-loopback addresses) are served on a loopback twin.

Format, as in CROSSOVER_ADDRESS_MAP: `FROM_CIDR=TO_CIDR[,FROM_CIDR=TO_CIDR...]`, both of one size; the host part
is kept. Example: `10.244.0.0/16=127.244.0.0/16` sends 10.244.3.7 to 127.244.3.7.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from crossover.contracts import ENV_ADDRESS_MAP


@dataclass(frozen=True)
class AddressMap:
    rules: tuple[tuple[ipaddress.IPv4Network, ipaddress.IPv4Network], ...] = ()

    @classmethod
    def parse(cls, text: str) -> AddressMap:
        rules = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            source, _, target = item.partition("=")
            a, b = ipaddress.IPv4Network(source.strip()), ipaddress.IPv4Network(target.strip())
            if a.prefixlen != b.prefixlen:
                raise ValueError(f"address map {item!r}: both sides need the same prefix length")
            rules.append((a, b))
        return cls(tuple(rules))

    @classmethod
    def from_env(cls) -> AddressMap:
        return cls.parse(os.environ.get(ENV_ADDRESS_MAP, ""))

    def translate(self, address: str) -> str:
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            return address
        for source, target in self.rules:
            if ip in source:
                return str(target.network_address + (int(ip) - int(source.network_address)))
        return address
