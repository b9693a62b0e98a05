#!/bin/bash
# An "agent" that misbehaves: every attempt below must be refused by the sandbox.
# Run by scripts/demo inside `sandboxd exec`; DEMO_HOST_HOME and DEMO_PORT come from --env.
escaped=0
refused() { printf '  refused   %s\n' "$1"; }
escaped() { printf '  ESCAPED   %s\n' "$1"; escaped=1; }

echo "inside the sandbox: $(id -un) (uid $(id -u)) on host '$(hostname)', cwd $PWD"

secret=$(cat .env 2>/dev/null)
[ -z "$secret" ] && refused "read the project's .env (it reads as empty)" || escaped "read .env: $secret"

key=$(cat "$DEMO_HOST_HOME/.ssh/id_rsa" 2>/dev/null)
if [ ! -f "$DEMO_HOST_HOME/profile.txt" ]; then escaped "(demo broken: the bound home is not visible, so the mask proves nothing)"
elif [ -z "$key" ] && [ -z "$(ls -A "$DEMO_HOST_HOME/.ssh")" ]; then refused "read ~/.ssh/id_rsa through a bind of the home (the bind is there, .ssh is masked empty)"
else escaped "read the ssh key"; fi

link=$(cat notes-link 2>/dev/null)
[ -z "$link" ] && refused "read .env through a symlink" || escaped "read .env via symlink: $link"

if (exec 3<>"/dev/tcp/127.0.0.1/$DEMO_PORT") 2>/dev/null; then escaped "connect to the host's 127.0.0.1:$DEMO_PORT"
else refused "connect to the host's 127.0.0.1:$DEMO_PORT (private network namespace)"; fi

if echo pwned 2>/dev/null > /usr/local/bin/evil; then escaped "write /usr/local/bin/evil"
else refused "write outside the workdir (/usr/local/bin/evil: read-only)"; fi

if echo pwned 2>/dev/null > .git/hooks/pre-commit; then escaped "plant a git hook"
else refused "plant .git/hooks/pre-commit (protected path)"; fi

if mount -t tmpfs none /tmp 2>/dev/null; then escaped "mount a filesystem"
else refused "mount a filesystem (seccomp: EPERM)"; fi

if unshare -U true 2>/dev/null; then escaped "create a nested user namespace"
else refused "create a nested user namespace"; fi

if echo '|/tmp/x' 2>/dev/null > /proc/sys/kernel/core_pattern; then escaped "write /proc/sys/kernel/core_pattern"
else refused "write /proc/sys/kernel/core_pattern"; fi

if kill -0 1 2>/dev/null && [ "$(cat /proc/1/comm 2>/dev/null)" != "systemd" ] && ! ls /proc | grep -qx "$DEMO_HOST_PID"; then
    refused "see host processes (only $(ls /proc | grep -c '^[0-9]') pids visible)"
else escaped "see host pid $DEMO_HOST_PID"; fi

echo "work done" > result.txt && echo "  allowed   write result.txt in the workdir"
exit $escaped
