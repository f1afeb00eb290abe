#!/usr/bin/env bash
# Shell completion of gencache: bash completion run for a few prefixes (through `complete -p`'s
# function, as bash itself calls it) gives the expected suggestions; for every verb that
# `gencache --help` lists, every option its own --help prints is offered by bash (completing
# "gencache VERB -") and named in the zsh script; the zsh script parses and loads in zsh.
set -euo pipefail
src=${GENCACHE_SOURCE_DIR:?}
gencache=${GENCACHE_BIN_DIR:?}/gencache
bash_script=$src/tools/completion/gencache.bash
zsh_script=$src/tools/completion/_gencache
fail() { echo "FAIL: $*" >&2; exit 1; }

# complete LINE: the suggestions bash offers for the last word of LINE (a trailing space starts a
# new, empty word), one per line, sorted.
complete_line() {
    bash --norc --noprofile -c '
        source "$1"
        spec=$(complete -p gencache) || exit 3
        fn=$(sed -E "s/.*-F ([^ ]+).*/\1/" <<<"$spec")
        read -ra COMP_WORDS <<<"$2"
        [[ $2 == *" " ]] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        COMP_LINE=$2
        COMP_POINT=${#2}
        "$fn" gencache "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}"' _ "$bash_script" "$1" | sort
}

expect() { # expect LINE WORD...: the suggestions are exactly the WORDs
    local got want
    got=$(complete_line "$1" | tr '\n' ' ')
    want=$(printf '%s\n' "${@:2}" | sort | tr '\n' ' ')
    [ "$got" = "$want" ] || fail "completing '$1': got '$got', expected '$want'"
}

expect "gencache inv" invalidate
expect "gencache im" imgid imghash import
expect "gencache invalidate --ol" --older-than
expect "gencache invalidate --t" --token --tag --tenant
expect "gencache key --mode c" clip
expect "gencache key --js" --json --jsonl
expect "gencache imghash --bits " 64 256
expect "gencache import --codec int8" int8 int8-channel int8-group
expect "gencache invalidate --layer text" text_embedding
expect "gencache get --url " # a value only the user knows: nothing
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
touch "$tmp/requests.jsonl" "$tmp/readme.txt"
expect "gencache key --jsonl $tmp/req" "$tmp/requests.jsonl"

# Every verb and every option of its --help, in both scripts.
verbs=$("$gencache" --help | sed -nE 's/^  ([a-z]+) .*/\1/p')
[ "$(wc -w <<<"$verbs")" -ge 13 ] || fail "verbs from --help: $verbs"
all_verbs=$(complete_line "gencache " | tr '\n' ' ')
for verb in $verbs; do
    [[ " $all_verbs " == *" $verb "* ]] || fail "bash does not offer the verb $verb"
    grep -q "'$verb:" "$zsh_script" || fail "zsh does not describe the verb $verb"
    offered=" $(complete_line "gencache $verb -" | tr '\n' ' ') "
    for opt in $("$gencache" "$verb" --help | grep -oE -- '(^|[[ ])(--[a-z][a-z-]*|-o)\b' |
                 tr -d '[ ' | sort -u); do
        [[ $offered == *" $opt "* ]] || fail "bash does not offer $opt for $verb (offers:$offered)"
        grep -qE -- "['\"(]$opt[=[]|[{,]$opt[,}=]" "$zsh_script" ||
            fail "zsh does not offer $opt for $verb"
    done
done

# The zsh script parses and defines its function when autoloaded as zsh does.
if command -v zsh >/dev/null; then
    zsh -n "$zsh_script" || fail "zsh -n"
    zsh -fc "fpath=($(dirname "$zsh_script") \$fpath); autoload -Uz compinit; compinit -u -d $tmp/zcompdump;
             [[ \${_comps[gencache]} == _gencache ]]" || fail "zsh compinit does not bind _gencache"
else
    echo "zsh not installed: its script checked by text only"
fi
echo "all passed"
