#!/usr/bin/env bash
# Reproduces the defects of the hardening issue (12) against a given backplane binary, to
# compare a build before the fixes with one after, side by side. Prints one line per defect.
# Usage: scripts/hardening-repro.sh /path/to/backplane  (its plugins beside it; needs python3, bc)
set -u
BP="$1"; BIN_DIR=$(dirname "$BP")
W=$(mktemp -d); cd "$W"
printf '[backends.local]\ntype = "local"\n' > backplane.toml
say() { printf '%-40s %s\n' "$1" "$2"; }

# 3. truncated plugin
mkdir cut; head -c 65536 "$BIN_DIR/libbackplane_std_nodes.so" > cut/libcut.so
"$BP" plugins --plugin-dir cut >/dev/null 2>&1; say "truncated plugin: plugins exit" "$?"

# 2. planted symlink under the old temporary name
printf '[[node]]\nid = "s"\ntype = "std.shell"\nsettings = { command = "sleep 1; echo output" }\n\n[[output]]\nfrom = "s.stdout"\nto = "out.txt"\n' > wf1.toml
echo precious > victim.txt
"$BP" run wf1.toml --config backplane.toml >/dev/null 2>&1 & pid=$!
sleep 0.3; ln -s "$W/victim.txt" ".out.txt.$pid.tmp"; wait $pid
say "planted link: victim now holds" "$(cat victim.txt)"

# FIFO destination
mkfifo fifo.out
printf '[[node]]\nid = "c"\ntype = "std.const"\nsettings = { text = "x" }\n\n[[output]]\nfrom = "c.text"\nto = "fifo.out"\n' > wf2.toml
timeout 10 "$BP" run wf2.toml --config backplane.toml >/dev/null 2>&1; code=$?
say "FIFO destination: exit, still a FIFO" "$code $( [ -p fifo.out ] && echo yes || echo no)"

# kill -9 during std.write_file
printf '[[node]]\nid = "big"\ntype = "std.shell"\nsettings = { command = "head -c 200000000 /dev/zero" }\n\n[[node]]\nid = "w"\ntype = "std.write_file"\ninputs = { data = "big.stdout" }\nsettings = { path = "big.bin" }\n' > wf3.toml
echo -n old > big.bin
"$BP" run wf3.toml --config backplane.toml >/dev/null 2>&1 & pid=$!
for i in $(seq 1 20000); do s=$(stat -c %s big.bin); t=$(ls -a | grep -c '^\.big\.bin\..*\.tmp$'); [ "$s" != 3 ] || [ "$t" != 0 ] && break; sleep 0.001; done
kill -9 $pid; wait $pid 2>/dev/null
say "kill -9 mid write_file: big.bin bytes" "$(stat -c %s big.bin)"

# huge glob
python3 -c "print('[backends.local]\ntype = \"local\"\n\n[[route]]\nmatch = { type = \"' + 'a'*400000 + '\" }\nbackend = \"local\"')" > huge.toml
printf '[[node]]\nid = "a"\ntype = "std.noop"\n' > wf4.toml
"$BP" validate wf4.toml --config huge.toml >/dev/null 2>&1; say "400k-char glob: validate exit" "$?"

# non-UTF-8
printf '[[node]]\nid = "a\xff"\ntype = "std.noop"\n' > wf5.toml
"$BP" validate wf5.toml --config backplane.toml >/dev/null 2>&1; say "non-UTF-8 workflow: exit" "$?"

# 100k errors on one line
python3 -c "print('[[node]]\nid = \"a\"\ntype = \"std.shell\"\nsettings = { command = \"true\", env = { ' + ', '.join(f'k{i} = 1' for i in range(100000)) + ' } }')" > wf6.toml
s=$(date +%s.%N); "$BP" validate wf6.toml --config backplane.toml >/dev/null 2>&1; e=$(date +%s.%N)
say "100k errors, one line: seconds" "$(echo "$e - $s" | bc)"
python3 -c "print('[[node]]\nid = \"a\"\ntype = \"std.shell\"\n[node.settings]\ncommand = \"true\"\n[node.settings.env]\n' + '\n'.join(f'k{i} = 1' for i in range(100000)))" > wf7.toml
s=$(date +%s.%N); "$BP" validate wf7.toml --config backplane.toml >/dev/null 2>&1; e=$(date +%s.%N)
say "100k errors, own lines: seconds" "$(echo "$e - $s" | bc)"

# 40 MB of [
python3 -c "import sys; sys.stdout.write('['*40000000)" > wf8.toml
/usr/bin/time -f "%M" -o mem.txt "$BP" validate wf8.toml --config backplane.toml >/dev/null 2>&1; code=$?
say "40 MB of [: exit, max RSS KiB" "$code $(cat mem.txt)"

# orphans after SIGKILL
printf '[[node]]\nid = "s"\ntype = "std.shell"\nsettings = { command = "sleep 300 & echo $! > bg.pid; sleep 300" }\n' > wf9.toml
"$BP" run wf9.toml --config backplane.toml >/dev/null 2>&1 & pid=$!
for i in $(seq 1 300); do [ -s bg.pid ] && break; sleep 0.01; done
kill -9 $pid; wait $pid 2>/dev/null; sleep 1
bg=$(cat bg.pid); alive=$(ps -o stat= -p "$bg" 2>/dev/null | grep -v Z | wc -l)
say "std.shell child alive after SIGKILL" "$alive"; kill -9 "$bg" 2>/dev/null

# unbounded stdout
printf '[[node]]\nid = "z"\ntype = "std.shell"\nsettings = { command = "head -c 3000000000 /dev/zero" }\n' > wf10.toml
/usr/bin/time -f "%M" -o mem2.txt timeout 60 "$BP" run wf10.toml --config backplane.toml >/dev/null 2>&1; code=$?
say "3 GB of stdout: exit, max RSS KiB" "$code $(cat mem2.txt | tail -1)"

# --json on invalid input
printf '[[node]]\nid = "a"\ntype = "std.nope"\n' > wf11.toml
say "validate --json invalid: stdout bytes" "$("$BP" validate --json wf11.toml --config backplane.toml 2>/dev/null | wc -c)"
say "run --json invalid: stdout bytes" "$("$BP" run --json wf11.toml --config backplane.toml 2>/dev/null | wc -c)"

# plugins exit code with a refused file
"$BP" plugins --plugin-dir cut >/dev/null 2>&1; say "plugins with a refused file: exit" "$?"
"$BP" plugins --plugin-dir /nonexistent >/dev/null 2>&1; say "plugins --plugin-dir missing: exit" "$?"
cd /; rm -rf "$W"
