# shellcheck shell=bash
# Sourced by dist.sh and policyd_rss.sh: the CFEngine side of a distribution
# measurement, as the baseline protocol sets it up. cf-serverd (work directory SRV,
# on 127.0.0.1:PORT) shares TREE; cf-agent (work directory CLI) copies it to DST with
# copy_from, compare => "digest". Both trust each other's key and no other.

# cf3_copy_setup SRV CLI PORT TREE DST: keys and the two policies; starts nothing.
cf3_copy_setup() {
  local srv=$1 cli=$2 port=$3 tree=$4 dst=$5 wd
  mkdir -p "$srv/inputs" "$cli/inputs"
  for wd in "$srv" "$cli"; do
    ln -s /usr/bin "$wd/bin"
    CFENGINE_TEST_OVERRIDE_WORKDIR=$wd cf-key >/dev/null
  done
  CFENGINE_TEST_OVERRIDE_WORKDIR=$srv cf-key -t "root@127.0.0.1:$cli/ppkeys/localhost.pub" >/dev/null
  CFENGINE_TEST_OVERRIDE_WORKDIR=$cli cf-key -t "root@127.0.0.1:$srv/ppkeys/localhost.pub" >/dev/null
  cat >"$srv/inputs/promises.cf" <<CF
body common control
{
  bundlesequence => { "main" };
}
bundle agent main
{
  vars:
      "unused" string => "cf-serverd does not run agent bundles";
}
body server control
{
  port => "$port";
  bindtointerface => "127.0.0.1";
  allowconnects => { "127.0.0.1" };
  allowallconnects => { "127.0.0.1" };
  allowusers => { "root" };
  maxconnections => "100";
}
bundle server access_rules
{
  access:
      "$tree/" admit_ips => { "127.0.0.1" };
}
CF
  cat >"$cli/inputs/promises.cf" <<CF
body common control
{
  bundlesequence => { "main" };
}
body copy_from remote(src)
{
  servers => { "127.0.0.1" };
  portnumber => "$port";
  source => "\$(src)";
  compare => "digest";
  copy_backup => "false";
  trustkey => "false";
}
body depth_search recurse(d)
{
  depth => "\$(d)";
  xdev => "true";
}
bundle agent main
{
  files:
      "$dst/."
        create => "true";
      "$dst"
        copy_from => remote("$tree"),
        depth_search => recurse("inf");
}
CF
}
