# bash completion for gencache(1): verbs, each verb's options, and the values of the options that
# take a fixed set (--mode, --algo, --bits, --format, --codec, --layer, --policy). Installed as
# share/bash-completion/completions/gencache, which bash-completion loads on first use.
# tests/integration/test_completion.sh checks it against every verb's --help.

_gencache()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local verbs="get put del invalidate stats normalize key imgid imghash similar export import prewarm lookup replay checkpoint resume"
    if ((COMP_CWORD == 1)); then
        mapfile -t COMPREPLY < <(compgen -W "$verbs --help --version" -- "$cur")
        return
    fi
    local client="--url --token --help"
    local opts
    case ${COMP_WORDS[1]} in
    get) opts="$client -o --output --meta --json" ;;
    put) opts="$client --cost-ms --ttl --tags --content-type --dtype --shape --pinned" ;;
    del) opts="$client" ;;
    invalidate) opts="$client --key --layer --tenant --tag --model --older-than --json" ;;
    stats) opts="$client --json" ;;
    normalize) opts="--mode --lines --jsonl --json --help" ;;
    key) opts="--config --layer --mode --tenant --lines --json --jsonl --help" ;;
    imgid) opts="--json --help" ;;
    imghash) opts="--algo --bits --json --help" ;;
    similar) opts="--radius --json --help" ;;
    export) opts="$client --format -o --output" ;;
    import) opts="$client --codec --ttl --json" ;;
    prewarm) opts="$client --json" ;;
    lookup) opts="$client --layer -o --output --json" ;;
    checkpoint) opts="$client --layer --dtype --step --cost-ms --json" ;;
    resume) opts="$client --layer --model --dtype -o --output --json" ;;
    replay) opts="--layers --policy --capacity --layer-fields --cost-share --size --extra --model --scale --limit --mrc --mixed --no-progress --json --help" ;;
    *) return ;;
    esac

    local values=""
    case $prev in
    --mode) values="exact safe clip tokens aggressive" ;;
    --algo) values="ahash dhash phash" ;;
    --bits) values="64 256" ;;
    --format) values="safetensors" ;;
    --codec) values="none f16 bf16 int8 int8-channel int8-group" ;;
    --layer) values="result image_latent text_embedding condition session" ;;
    --policy) values="lru gdsf s3fifo" ;;
    --layers) values="result text_embedding condition image_latent" ;;
    -o | --output | --config | --extra)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    --url | --token | --key | --tenant | --tag | --model | --older-than | --cost-ms | --ttl | --step | \
        --tags | --content-type | --dtype | --shape | --radius | --capacity | --layer-fields | \
        --cost-share | --size | --scale | --limit | --mrc)
        return # a value only the user knows
        ;;
    esac
    if [[ -n $values ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
    elif [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
}
complete -o filenames -F _gencache gencache
