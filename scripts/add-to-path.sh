#!/bin/sh
# `make install`: put BINDIR on the PATH of every new shell, login shells (~/.profile, read by
# `bash -l`, ssh and desktop sessions) and interactive ones (~/.bashrc) alike, the way rustup
# and uv's installer do: one guarded line per startup file, added once, never duplicated.
# NO_MODIFY_PATH=1 leaves the files alone and prints the line instead.
set -eu
bindir=$1

case ":$PATH:" in
*":$bindir:"*)
	echo "petrock is on your PATH: run \`petrock --help\`"
	exit 0
	;;
esac

line="case \":\$PATH:\" in *\":$bindir:\"*) ;; *) export PATH=\"$bindir:\$PATH\" ;; esac  # added by petrock's make install"

if [ -n "${NO_MODIFY_PATH:-}" ]; then
	echo "note: $bindir is not on your PATH. For new shells, add this line to ~/.profile and ~/.bashrc (zsh: ~/.zshenv):"
	echo "  $line"
	echo "or install the link where your PATH already looks: make install BINDIR=/usr/local/bin"
	exit 0
fi

# Login bash reads the first of ~/.bash_profile, ~/.bash_login, ~/.profile: each one that exists gets the line.
files=".profile .bashrc"
for optional in .bash_profile .bash_login; do
	if [ -f "$HOME/$optional" ]; then files="$files $optional"; fi
done
if [ -f "$HOME/.zshrc" ] || [ -f "$HOME/.zshenv" ]; then files="$files .zshenv"; fi

changed=""
for file in $files; do
	if ! grep -qsF "$line" "$HOME/$file"; then
		printf '\n%s\n' "$line" >>"$HOME/$file"
		changed="$changed ~/$file"
	fi
done
if [ -n "$changed" ]; then
	echo "added $bindir to PATH for new shells in$changed (NO_MODIFY_PATH=1 to skip)"
else
	echo "$bindir is on PATH for new shells (set in ~/.profile and ~/.bashrc)"
fi
echo "for this shell: export PATH=\"$bindir:\$PATH\"   (or open a new one)"
