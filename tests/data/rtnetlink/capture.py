#!/usr/bin/env python3
"""Captures rtnetlink datagrams for src/watchdog/netevents/rtnetlink.rs's tests.

Run as root inside a private network namespace (it adds a veth pair there; this kernel has no dummy module):
    unshare -n python3 tests/data/rtnetlink/capture.py > tests/data/rtnetlink/events.hex
One line per datagram: NAME.N HEX (host byte order of the capturing machine: x86_64, little-endian).
"""
import os, socket, struct, subprocess, sys, time

GROUPS = 0x1 | 0x10 | 0x100 | 0x40 | 0x400
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, GROUPS))
s.setblocking(False)

def ip(*args):
    subprocess.run(["ip", *args], check=True)

def drain(wait=0.3):
    out, end = [], time.time() + wait
    while time.time() < end:
        try:
            out.append(s.recv(65536))
        except BlockingIOError:
            time.sleep(0.02)
    return out

def emit(name, dgrams):
    for k, d in enumerate(dgrams):
        print(f"{name}.{k} {d.hex()}")

def getroute(dst):
    q = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    q.bind((0, 0))
    attr = struct.pack("=HH4s", 8, 1, socket.inet_aton(dst))
    body = struct.pack("=BBBBBBBBI", 2, 32, 0, 0, 0, 0, 0, 0, 0) + attr
    hdr = struct.pack("=IHHII", 16 + len(body), 26, 1, 1, 0)
    q.send(hdr + body)
    q.settimeout(2)
    r = q.recv(65536)
    q.close()
    return [r]

print("# rtnetlink datagrams captured by capture.py on " + os.uname().release)
ip("link", "add", "tcl0", "type", "veth", "peer", "name", "tcl1"); ip("link", "set", "tcl1", "up"); drain()
ip("link", "set", "tcl0", "up"); emit("newlink_up", drain())
ip("addr", "add", "10.77.0.2/24", "dev", "tcl0"); emit("newaddr4", drain())
ip("addr", "add", "fd77::2/64", "dev", "tcl0", "nodad"); emit("newaddr6", drain())
ip("route", "add", "default", "via", "10.77.0.1"); emit("newroute4_default", drain())
ip("route", "add", "198.51.100.9/32", "via", "10.77.0.1"); emit("newroute4_host", drain())
emit("getroute_reply", getroute("198.51.100.9"))
ip("route", "del", "198.51.100.9/32"); drain()
ip("route", "del", "default"); emit("delroute4_default", drain())
emit("getroute_unreachable", getroute("198.51.100.9"))
ip("addr", "del", "10.77.0.2/24", "dev", "tcl0"); emit("deladdr4", drain())
ip("link", "set", "tcl0", "down"); emit("newlink_down", drain())
