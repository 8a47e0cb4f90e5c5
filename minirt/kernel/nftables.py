"""The packet filter: NAT and isolation for container networks (nftables).

Lecture idea: a container's address is private to the host, so the host
translates.  Outgoing packets leave with the host's address (*masquerade*,
source NAT); a connection to a host port is redirected to a container's
address and port (*DNAT*, destination NAT) — that is all "publishing a port"
is.  And since the host routes between its bridges, a filter rule keeps two
container networks apart.

minirt keeps all its rules in one nftables table of its own (``ip minirt``, or
the test prefix), written by the ``nft`` tool (Debian package ``nftables``):

- the rules are fixed and written once; what changes as networks and
  containers come and go are *elements of sets and maps* (a bridge name, a
  subnet, a published port), which are added and deleted by key — no rule
  handles to find, nothing to parse;
- removing the table removes every rule minirt ever made, in one step.
"""

import subprocess

# The whole table.  ``add`` is idempotent for tables, chains and sets, so this
# can be sent again at any time; the rules are only added when the table is
# new (``ensure``).
TABLE = """\
add table ip {t}
add set ip {t} bridges {{ type ifname; }}
add set ip {t} subnets {{ type ipv4_addr; flags interval; }}
add set ip {t} same {{ type ifname . ifname; }}
add map ip {t} ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map ip {t} ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain ip {t} published
add chain ip {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}
add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}
add chain ip {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}
add chain ip {t} forward {{ type filter hook forward priority 0; policy accept; }}
"""

RULES = """\
add rule ip {t} published meta l4proto {{ tcp, udp }} dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
add rule ip {t} published meta l4proto {{ tcp, udp }} dnat ip to meta l4proto . th dport map @ports_any
add rule ip {t} prerouting fib daddr type local jump published
add rule ip {t} output fib daddr type local jump published
add rule ip {t} postrouting ip saddr @subnets oifname != @bridges masquerade
add rule ip {t} postrouting ip saddr 127.0.0.0/8 oifname @bridges masquerade
add rule ip {t} forward iifname @bridges oifname @bridges iifname . oifname != @same drop
"""
# The rules, in words:
#   published    a packet to a published host port gets the container's
#                address and port (ports_ip: for one host address; ports_any: all)
#   prerouting   ... for packets from elsewhere to one of the host's addresses
#   output       ... for connections made on the host itself (127.0.0.1:PORT too;
#                the bridge's route_localnet lets 127.0.0.1 leave through it)
#   postrouting  containers' packets leaving the host get its address
#                (masquerade); so do the host's 127.0.0.1 packets redirected to
#                a container, or the reply would go to the container's own lo
#   forward      packets between two different minirt bridges are dropped: networks
#                are isolated from each other (within one bridge, "same" allows them)


class NftError(Exception):
    pass


def run(script):
    """Apply an nft script as one transaction: all of it or nothing."""
    try:
        r = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise NftError("the nft command is missing (install the nftables package)") from None
    if r.returncode != 0:
        raise NftError(r.stderr.strip().splitlines()[0] if r.stderr.strip() else "nft failed")


def exists(table):
    r = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True)
    return r.returncode == 0


def ensure(table):
    """Create minirt's table with its chains, sets and rules, if it is not there."""
    if exists(table):
        return
    run(TABLE.format(t=table) + RULES.format(t=table))


def delete_table(table):
    try:
        run(f"delete table ip {table}\n")
    except NftError:
        pass  # gone already


def add_elements(table, name, elements):
    run("".join(f"add element ip {table} {name} {{ {e} }}\n" for e in elements))


def delete_elements(table, name, elements):
    """Delete each element that is there; a missing one is not an error."""
    for e in elements:
        try:
            run(f"delete element ip {table} {name} {{ {e} }}\n")
        except NftError:
            pass


def set_elements(table, name):
    """The elements of a set or map, as nft prints them (for tests and clean-up)."""
    import json

    r = subprocess.run(["nft", "-j", "list", "set", "ip", table, name], capture_output=True, text=True)
    if r.returncode != 0:
        r = subprocess.run(["nft", "-j", "list", "map", "ip", table, name], capture_output=True, text=True)
    if r.returncode != 0:
        return []
    for item in json.loads(r.stdout).get("nftables", []):
        body = item.get("set") or item.get("map")
        if body:
            return body.get("elem", [])
    return []


def add_network(table, bridge, subnet):
    """Tell the rules about a network: its bridge and its subnet."""
    run(f'add element ip {table} bridges {{ "{bridge}" }}\n'
        f'add element ip {table} same {{ "{bridge}" . "{bridge}" }}\n'
        f'add element ip {table} subnets {{ {subnet} }}\n')


def delete_network(table, bridge, subnet):
    try:  # one transaction; if an element is missing already, one by one
        run(f'delete element ip {table} bridges {{ "{bridge}" }}\n'
            f'delete element ip {table} same {{ "{bridge}" . "{bridge}" }}\n'
            f'delete element ip {table} subnets {{ {subnet} }}\n')
    except NftError:
        delete_elements(table, "bridges", [f'"{bridge}"'])
        delete_elements(table, "same", [f'"{bridge}" . "{bridge}"'])
        delete_elements(table, "subnets", [subnet])


def _port_key(host_ip, proto, host_port):
    return f"{proto} . {host_port}" if host_ip in ("", "0.0.0.0") else f"{host_ip} . {proto} . {host_port}"


def publish(table, host_ip, proto, host_port, address, port):
    """Redirect ``host_ip:host_port`` (all host addresses when empty) to ``address:port``."""
    name = "ports_any" if host_ip in ("", "0.0.0.0") else "ports_ip"
    add_elements(table, name, [f"{_port_key(host_ip, proto, host_port)} : {address} . {port}"])


def unpublish(table, host_ip, proto, host_port):
    name = "ports_any" if host_ip in ("", "0.0.0.0") else "ports_ip"
    delete_elements(table, name, [_port_key(host_ip, proto, host_port)])
