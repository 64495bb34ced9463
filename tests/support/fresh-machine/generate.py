"""Writes tests/support/fresh-machine/commands.txt: the commands a fresh machine of
this project's kind has on its PATH. Run on such a machine (Debian 12):

    python3 tests/support/fresh-machine/generate.py > tests/support/fresh-machine/commands.txt

The Debian part: every command in /bin, /sbin, /usr/bin and /usr/sbin of the
installed packages that are Essential or of priority required (Debian's minimal
base), of the packages such a machine is given (NAMED), and of everything those
depend on, plus the alternatives (cc, awk, ...) that point into them. The Rust
part: the toolchain's commands, from rustup, in ~/.cargo/bin."""
import subprocess, re, os

HEADER = """
# The commands on the PATH of a fresh machine of this project's kind, as root, before
# anything is installed for the project: Debian 12 with the Rust toolchain (rustup),
# build-essential, git, curl, bc, iproute2, procps, python3, strace, valgrind and
# util-linux; no nftables, socat, netcat, tcpdump, redis-tools, clang or golang.
# Written by generate.py beside this file (which says how) on such a machine.
# tests/fresh_machine.rs runs the README's demo with a PATH of only these commands.
"""
out = subprocess.run(["dpkg-query","-W","-f=${Package}\t${Essential}\t${Priority}\t${Status}\t${Pre-Depends}, ${Depends}\n"],capture_output=True,text=True).stdout
pk = {}
for line in out.splitlines():
    name, ess, prio, status, deps = line.split("\t")
    if status != "install ok installed": continue
    alts = [[re.sub(r"[ (:].*","",a.strip()) for a in d.split("|")] for d in deps.split(",") if d.strip()]
    pk[name] = (ess, prio, alts)
# virtual packages: map provides
prov = {}
out2 = subprocess.run(["dpkg-query","-W","-f=${Package}\t${Provides}\n"],capture_output=True,text=True).stdout
for line in out2.splitlines():
    n, p = line.split("\t")
    for x in p.split(","):
        x = re.sub(r"[ (].*","",x.strip())
        if x: prov.setdefault(x, []).append(n)
NAMED = named = "build-essential git curl bc iproute2 procps python3 strace valgrind util-linux".split()
todo = [n for n,(e,p,_) in pk.items() if e=="yes" or p=="required"] + named
seen=set()
while todo:
    n = todo.pop()
    cands = [n] if n in pk else prov.get(n, [])
    for c in cands:
        if c in seen or c not in pk: continue
        seen.add(c)
        for alt in pk[c][2]:
            for a in alt:
                if a in pk or a in prov: todo.append(a); break
cmds=set()
for p in seen:
    files = subprocess.run(["dpkg","-L",p],capture_output=True,text=True).stdout.split()
    for f in files:
        d, b = os.path.split(f)
        if d in ("/bin","/sbin","/usr/bin","/usr/sbin") and (os.path.isfile(f) or os.path.islink(f)):
            cmds.add(b)
# Alternatives (cc, awk, ...): links whose chosen target one of those packages owns.
owned = set()
for p in seen:
    owned.update(subprocess.run(["dpkg", "-L", p], capture_output=True, text=True).stdout.split())
for d in ("/bin", "/sbin", "/usr/bin", "/usr/sbin"):
    for b in os.listdir(d):
        f = os.path.join(d, b)
        if os.path.islink(f) and os.readlink(f).startswith("/etc/alternatives/"):
            if os.path.realpath(f) in owned:
                cmds.add(b)

RUST = "cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver rustup".split()
print(HEADER.strip())
print("# Debian packages (%d): %s" % (len(seen), " ".join(sorted(seen))))
print("[rust]")
print("\n".join(RUST))
print("[debian]")
print("\n".join(sorted(cmds)))
