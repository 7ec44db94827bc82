#!/usr/bin/env python3
"""Workload generator and checker for the local-convergence benchmark.

    gen.py N ROOT            write ROOT/cf3/promises.cf and ROOT/tenet/policy.toml,
                             then create the initial (unconverged) state
    gen.py N ROOT --reset    move the current state into ROOT/.trash/, recreate
                             the initial state and sync
    gen.py N ROOT --verify   check that ROOT is converged (exit 0) or not (exit 1)
    gen.py N ROOT --mix      as the first form, plus the mixed workload of the
                             newer promise types (tenet only; see mix.sh);
                             with --reset or --verify, reset or check it too

ROOT must be a directory under /tmp/.  Nothing outside ROOT is touched, and
ROOT/var, ROOT/cf3, ROOT/tenet and ROOT/cfwd are never moved by --reset.

The workload for N items (plus one environment file):

    N/2  files   ROOT/files/dNN/fNNNN, exact ~196 byte content, mode 0644
    N/4  lines   spread over ten pre-existing ROOT/etc/conf{0..9}.txt
                 (ten base lines each), N/40 lines per file
    N/8  links   ROOT/links/lNNNN -> ROOT/files/dNN/fNNNN (absolute target)
    N/8  absent  ROOT/junk/jNNNN, created by the reset, removed by the policy
    1    env     ROOT/etc/environment: RPC_UNSUPPORTED_NETADDRS has a wrong
                 value, BENCH_N=<N> is missing

Both policies describe exactly this workload.  The CFEngine policy uses
absolute paths inside ROOT.  The tenet policy uses paths such as
/files/d00/f0000; `tenet-agent apply --root ROOT` resolves them, link
targets included, beneath ROOT, so both tools must produce the same tree and
one checker (--verify) serves both.

The mixed workload (--mix; tenet only, as CFEngine's users, packages and
services promises act on the host and cannot be sandboxed):

    N/8  tree    ROOT/etc/tree/dNN/tNNNN from ROOT/tenet/files/tree by one
                 [[tree]] with purge, notifying a [[handler]] (`true`)
    4+4  users   [[group]] benchgK and [[user]] benchuK in ROOT/etc/passwd, group,
                 shadow, gshadow (written by the reset)
    1    pkg     tenet-bench from ROOT/srv/debs (built with dpkg-deb) into the
                 dpkg database ROOT/var/lib/dpkg (emptied by the reset)
    1    service tenet-bench.service enabled with systemctl --root (the unit is in
                 ROOT/usr/lib/systemd/system)
    1    process no process matches a pattern (stopped: one scan of /proc)

Only the standard library is used (and dpkg-deb for --mix).
"""
import argparse
import hashlib
import os
import stat
import sys
import time

NCONF = 10
FILES_PER_DIR = 100
CONF_BASE_LINES = 10
ENV_WANT = [("RPC_UNSUPPORTED_NETADDRS", "9.3.240.1:9.3.240.66")]
ENV_INITIAL = (
    'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
    "LANG=C.UTF-8\n"
    "RPC_UNSUPPORTED_NETADDRS=1.2.3.4\n"
)
# Directories that hold the workload state; --reset moves only these.
STATE_DIRS = ("files", "links", "junk", "etc")


# ---------------------------------------------------------------- workload


def counts(n):
    """(files, lines, links, absent) for N items."""
    return n // 2, n // 4, n // 8, n // 8


def width(k):
    """Digits in the index of a set of k items (at least 4)."""
    return max(4, len(str(max(k - 1, 0))))


def file_rel(i, nfiles):
    return "/files/d%02d/f%0*d" % (i // FILES_PER_DIR, width(nfiles), i)


def file_content(i):
    """Deterministic ~196 byte text; only [a-z0-9 #=] and newlines."""
    out = ["# managed file %05d by bench\n" % i]
    for j in range(3):
        digest = hashlib.sha256(("%d-%d" % (i, j)).encode()).hexdigest()[:48]
        out.append("key%d=%s\n" % (j, digest))
    out.append("end\n")
    return "".join(out)


def conf_rel(c):
    return "/etc/conf%d.txt" % c


def conf_initial(c):
    return "".join("# base line %02d of conf%d\n" % (k, c) for k in range(CONF_BASE_LINES))


def conf_lines(nlines):
    """For each conf file, the lines that must be present in it."""
    per = [[] for _ in range(NCONF)]
    for k in range(nlines):
        per[k % NCONF].append("svc%05d  %d/tcp  alias%05d # bench" % (k, 20000 + k, k))
    return per


def link_rel(i, nlinks):
    return "/links/l%0*d" % (width(nlinks), i)


def link_target_rel(i, nfiles):
    return file_rel(i % max(nfiles, 1), nfiles)


def junk_rel(i, njunk):
    return "/junk/j%0*d" % (width(njunk), i)


ENV_REL = "/etc/environment"


def env_want(n):
    return ENV_WANT + [("BENCH_N", str(n))]


def under(root, rel):
    """ROOT + an absolute policy path."""
    return root + rel


# ---------------------------------------------------------------- CFEngine policy


def cf_str(s):
    """A CFEngine double-quoted string.  Newlines may appear literally; only
    backslash and double quote need escaping, and the workload never contains
    a variable reference."""
    assert "$(" not in s and "${" not in s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


CF_BODIES = r'''body common control
{
  bundlesequence => { "main" };
}

body perms p644
{
  mode => "644";
  rxdirs => "false";
}

body link_from ln_s(x)
{
  link_type => "symlink";
  source => "$(x)";
  when_no_source => "force";
}

body delete tidy
{
  dirlinks => "delete";
  rmdirs => "true";
}

body edit_field col(split,col,newval,method)
{
  field_separator => "$(split)";
  select_field => "$(col)";
  value_separator => ",";
  field_value => "$(newval)";
  field_operation => "$(method)";
  extend_fields => "true";
  allow_blank_fields => "true";
}

# set_variable_values from the standard library (lib/files.cf), inlined so the
# policy stands alone, with a regline() guard as in set_line_based: a key not
# yet in the file is inserted instead of making field_edits report an error.
bundle edit_line set_variable_values(v)
{
  vars:
      "index" slist => getindices("$(v)");
      "cindex[$(index)]" string => canonify("$(index)");
  classes:
      "have_$(cindex[$(index)])" expression => regline("^\s*$(index)\s*=.*", "$(edit.filename)");
  field_edits:
      "\s*$(index)\s*=.*"
        edit_field => col("\s*$(index)\s*=","2","$($(v)[$(index)])","set"),
        if => "have_$(cindex[$(index)])";
  insert_lines:
      "$(index)=$($(v)[$(index)])"
        if => "!have_$(cindex[$(index)])";
}
'''


def cf3_policy(n, root):
    nfiles, nlines, nlinks, njunk = counts(n)
    out = ["# generated by bench/gen.py N=%d ROOT=%s" % (n, root), CF_BODIES]
    add = out.append
    per = conf_lines(nlines)
    for c in range(NCONF):
        if per[c]:
            add("bundle edit_line conf%d_lines\n{\n  insert_lines:" % c)
            for line in per[c]:
                add("      %s;" % cf_str(line))
            add("}\n")
    add("bundle agent main\n{\n  vars:")
    for key, value in env_want(n):
        add('      "env[%s]" string => %s;' % (key, cf_str(value)))
    add("\n  files:")
    for i in range(nfiles):
        add('      %s\n        create => "true", perms => p644,\n        content => %s;'
            % (cf_str(under(root, file_rel(i, nfiles))), cf_str(file_content(i))))
    for c in range(NCONF):
        if per[c]:
            add("      %s edit_line => conf%d_lines;" % (cf_str(under(root, conf_rel(c))), c))
    for i in range(nlinks):
        add("      %s link_from => ln_s(%s);"
            % (cf_str(under(root, link_rel(i, nlinks))),
               cf_str(under(root, link_target_rel(i, nfiles)))))
    for i in range(njunk):
        add("      %s delete => tidy;" % cf_str(under(root, junk_rel(i, njunk))))
    add('      %s edit_line => set_variable_values("main.env");' % cf_str(under(root, ENV_REL)))
    add("}\n")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- tenet policy


def toml_str(s):
    """A TOML basic string."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def tenet_policy(n):
    nfiles, nlines, nlinks, njunk = counts(n)
    out = ["# generated by bench/gen.py N=%d; apply with --root ROOT\n" % n]
    add = out.append
    for i in range(nfiles):
        add("[[file]]\npath = %s\ncontent = %s\nmode = \"0644\"\n"
            % (toml_str(file_rel(i, nfiles)), toml_str(file_content(i))))
    per = conf_lines(nlines)
    for c in range(NCONF):
        for line in per[c]:
            add("[[line]]\nfile = %s\nline = %s\n" % (toml_str(conf_rel(c)), toml_str(line)))
    for i in range(nlinks):
        add("[[link]]\npath = %s\ntarget = %s\n"
            % (toml_str(link_rel(i, nlinks)), toml_str(link_target_rel(i, nfiles))))
    for i in range(njunk):
        add("[[absent]]\npaths = [%s]\n" % toml_str(junk_rel(i, njunk)))
    for key, value in env_want(n):
        add("[[setting]]\nfile = %s\nkey = %s\nvalue = %s\nstyle = \"env\"\n"
            % (toml_str(ENV_REL), toml_str(key), toml_str(value)))
    return "\n".join(out)


MIX_USERS = 4
MIX_DEB = "/srv/debs/tenet-bench_1.0_all.deb"
MIX_UNIT = "/usr/lib/systemd/system/tenet-bench.service"
MIX_PKG_FILES = "/usr/share/tenet-bench"


def tree_rel(i, ntree):
    return "d%02d/t%0*d" % (i // FILES_PER_DIR, width(ntree), i)


def mix_policy(n):
    ntree = n // 8
    out = ["# generated by bench/gen.py N=%d --mix\n" % n]
    add = out.append
    if ntree:
        add('[[tree]]\nname = "tree"\npath = "/etc/tree"\nsource = "tree"\npurge = true\n'
            'mode = "0644"\nnotify = ["command:bench-reload"]\n')
    add('[[handler]]\nname = "bench-reload"\nshell = "true"\n')
    for k in range(MIX_USERS):
        add('[[group]]\ngroup = "benchg%d"\ngid = %d\n' % (k, 3200 + k))
        add('[[user]]\nuser = "benchu%d"\nuid = %d\ngroup = "benchg%d"\nshell = "/bin/sh"\n'
            % (k, 3200 + k, k))
    add('[[pkg]]\npkg = "tenet-bench"\nversion = "1.0"\nsource = "%s"\n' % MIX_DEB)
    add('[[service]]\nunit = "tenet-bench"\nenablement = "enabled"\n')
    add('[[process]]\nmatch = "^tenet-bench-never-runs "\nstate = "stopped"\n')
    return "\n".join(out)


def mix_generate(n, root):
    """The mixed workload's policy, tree source, package and unit (once)."""
    import subprocess
    tpol = os.path.join(root, "tenet")
    write_file(os.path.join(tpol, "mix.toml"), mix_policy(n), 0o600)
    ntree = n // 8
    for i in range(ntree):
        p = os.path.join(tpol, "files", "tree", tree_rel(i, ntree))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        write_file(p, file_content(i))
    build = os.path.join(root, ".debbuild")
    os.makedirs(os.path.join(build, "DEBIAN"), exist_ok=True)
    write_file(os.path.join(build, "DEBIAN", "control"),
               "Package: tenet-bench\nVersion: 1.0\nArchitecture: all\n"
               "Maintainer: tenet bench <bench@example.org>\nDescription: bench package\n")
    os.makedirs(os.path.join(build, MIX_PKG_FILES.lstrip("/")), exist_ok=True)
    write_file(os.path.join(build, MIX_PKG_FILES.lstrip("/"), "version"), "1.0\n")
    os.makedirs(os.path.dirname(under(root, MIX_DEB)), exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", build, under(root, MIX_DEB)],
                   check=True, stdout=subprocess.DEVNULL)
    os.makedirs(os.path.dirname(under(root, MIX_UNIT)), exist_ok=True)
    write_file(under(root, MIX_UNIT),
               "[Unit]\nDescription=bench\n[Service]\nExecStart=/bin/true\n"
               "[Install]\nWantedBy=multi-user.target\n")


def mix_reset(root, trash):
    """The mixed workload's initial state (ROOT/etc was just recreated)."""
    write_file(under(root, "/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
    write_file(under(root, "/etc/group"), "root:x:0:\n")
    write_file(under(root, "/etc/shadow"), "root:*:19000:0:99999:7:::\n", 0o640)
    write_file(under(root, "/etc/gshadow"), "root:*::\n", 0o640)
    for rel in ("/var/lib/dpkg", MIX_PKG_FILES):
        p = under(root, rel)
        if os.path.lexists(p):
            os.makedirs(trash, exist_ok=True)
            os.rename(p, os.path.join(trash, rel.strip("/").replace("/", "_")))
    for d in ("info", "updates", "triggers"):
        os.makedirs(under(root, "/var/lib/dpkg/" + d))
    write_file(under(root, "/var/lib/dpkg/status"), "")


def mix_verify(n, root):
    errs = []
    ntree = n // 8
    for i in range(ntree):
        p = under(root, "/etc/tree/" + tree_rel(i, ntree))
        try:
            with open(p) as f:
                if f.read() != file_content(i):
                    errs.append("tree content mismatch %s" % p)
        except OSError as e:
            errs.append("missing %s (%s)" % (p, e))
    with open(under(root, "/etc/passwd")) as f:
        passwd = f.read()
    for k in range(MIX_USERS):
        if ("benchu%d:x:%d:%d:" % (k, 3200 + k, 3200 + k)) not in passwd:
            errs.append("user benchu%d missing" % k)
    if not os.path.exists(under(root, MIX_PKG_FILES + "/version")):
        errs.append("package tenet-bench not installed")
    if not os.path.islink(under(root, "/etc/systemd/system/multi-user.target.wants/tenet-bench.service")):
        errs.append("tenet-bench.service not enabled")
    for e in errs[:20]:
        print("mix: " + e)
    return 1 if errs else 0


# ---------------------------------------------------------------- state


def write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def reset(n, root, mix=False):
    """Move the workload state into ROOT/.trash/ and recreate the initial state.

    Renaming instead of deleting keeps the mass unlink out of the timed runs:
    on ext4 without a journal, inodes freed in the last 60 s are skipped (and
    scanned past) by every allocation, which inflated the next runs' system
    time several times over.  The caller deletes ROOT/.trash after the timed
    rounds.

    The reset ends with sync(2), so the next run starts with nothing dirty
    in the page cache.  A tool that makes its writes durable with syncfs(2)
    would otherwise also pay for writing back the reset's files and whatever
    the previous runs left dirty on the same filesystem."""
    _, _, _, njunk = counts(n)
    trash = os.path.join(root, ".trash", "%d.%d" % (os.getpid(), time.time_ns()))
    for d in STATE_DIRS:
        p = os.path.join(root, d)
        if os.path.lexists(p):
            os.makedirs(trash, exist_ok=True)
            os.rename(p, os.path.join(trash, d))
    for d in STATE_DIRS:
        os.makedirs(os.path.join(root, d))
    for c in range(NCONF):
        write_file(under(root, conf_rel(c)), conf_initial(c))
    write_file(under(root, ENV_REL), ENV_INITIAL)
    for i in range(njunk):
        write_file(under(root, junk_rel(i, njunk)), "junk %d\n" % i)
    if mix:
        mix_reset(root, trash)
    os.sync()


def generate(n, root, mix=False):
    for sub, name, text in (("cf3", "promises.cf", cf3_policy(n, root)),
                            ("tenet", "policy.toml", tenet_policy(n))):
        d = os.path.join(root, sub)
        os.makedirs(d, exist_ok=True)
        # cf-agent refuses a policy file that others may write; 0600 suits both.
        write_file(os.path.join(d, name), text, 0o600)
    if mix:
        mix_generate(n, root)
    reset(n, root, mix)


# ---------------------------------------------------------------- checker


def verify(n, root):
    """The converged state, checked the same way for both tools."""
    nfiles, nlines, nlinks, njunk = counts(n)
    errs = []
    for i in range(nfiles):
        p = under(root, file_rel(i, nfiles))
        try:
            st = os.lstat(p)
            with open(p) as f:
                data = f.read()
        except OSError as e:
            errs.append("missing %s (%s)" % (p, e))
            continue
        if not stat.S_ISREG(st.st_mode):
            errs.append("not a regular file %s" % p)
        if data != file_content(i):
            errs.append("content mismatch %s" % p)
        if stat.S_IMODE(st.st_mode) != 0o644:
            errs.append("mode %o %s" % (stat.S_IMODE(st.st_mode), p))
    per = conf_lines(nlines)
    for c in range(NCONF):
        p = under(root, conf_rel(c))
        try:
            with open(p) as f:
                got = f.read().splitlines()
        except OSError as e:
            errs.append("conf%d: %s" % (c, e))
            continue
        if got[:CONF_BASE_LINES] != conf_initial(c).splitlines():
            errs.append("conf%d base lines changed" % c)
        for line in per[c]:
            k = got.count(line)
            if k != 1:
                errs.append("conf%d line %r present %d times" % (c, line, k))
        if len(got) != CONF_BASE_LINES + len(per[c]):
            errs.append("conf%d has %d lines, want %d"
                        % (c, len(got), CONF_BASE_LINES + len(per[c])))
    for i in range(nlinks):
        p = under(root, link_rel(i, nlinks))
        try:
            target = os.readlink(p)
        except OSError as e:
            errs.append("link %s: %s" % (p, e))
            continue
        want = under(root, link_target_rel(i, nfiles))
        if target != want:
            errs.append("link %s -> %s, want %s" % (p, target, want))
    for i in range(njunk):
        p = under(root, junk_rel(i, njunk))
        if os.path.lexists(p):
            errs.append("junk still present %s" % p)
    env_ok = True
    try:
        with open(under(root, ENV_REL)) as f:
            env = f.read().splitlines()
    except OSError as e:
        env, env_ok = [], False
        errs.append("environment: %s" % e)
    for key, value in env_want(n):
        want = "%s=%s" % (key, value)
        if env.count(want) != 1 or sum(1 for x in env if x.startswith(key + "=")) != 1:
            env_ok = False
            errs.append("environment: want exactly one %r, got %r" % (want, env))
    for base in ("PATH=", "LANG="):
        if sum(1 for x in env if x.startswith(base)) != 1:
            env_ok = False
            errs.append("environment: line %s... lost or repeated" % base)

    def entries(d):
        p = os.path.join(root, d)
        return sum(len(fs) + sum(1 for x in ds if os.path.islink(os.path.join(top, x)))
                   for top, ds, fs in os.walk(p)) if os.path.isdir(p) else 0

    nf, nl, nj = entries("files"), entries("links"), entries("junk")
    if nf != nfiles:
        errs.append("files/ holds %d entries, want %d" % (nf, nfiles))
    if nl != nlinks:
        errs.append("links/ holds %d entries, want %d" % (nl, nlinks))
    summary = "files=%d/%d links=%d/%d junk_left=%d conf_lines=%d env_ok=%s" % (
        nf, nfiles, nl, nlinks, nj, nlines, env_ok)
    for e in errs[:20]:
        print("VERIFY-ERR", e, file=sys.stderr)
    if errs:
        print("VERIFY FAIL (%d errors) %s" % (len(errs), summary))
        return 1
    print("VERIFY OK " + summary)
    return 0


# ---------------------------------------------------------------- main


def sandbox(path):
    root = os.path.abspath(path)
    if not root.startswith("/tmp/") or root == "/tmp/":
        sys.exit("gen.py: ROOT must be a directory under /tmp/, got %r" % path)
    return root


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, metavar="N", help="number of items")
    ap.add_argument("root", metavar="ROOT", help="sandbox directory under /tmp/")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--reset", action="store_true",
                      help="move the state into ROOT/.trash/ and recreate the initial state")
    mode.add_argument("--verify", action="store_true", help="check the converged state")
    ap.add_argument("--mix", action="store_true",
                    help="with the mixed workload of the newer promise types (tenet only)")
    args = ap.parse_args()
    if args.n < 0:
        sys.exit("gen.py: N must be >= 0")
    root = sandbox(args.root)
    if args.verify:
        bad = verify(args.n, root)
        return (mix_verify(args.n, root) or bad) if args.mix else bad
    if args.reset:
        reset(args.n, root, args.mix)
        return 0
    generate(args.n, root, args.mix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
