/*
 * bench_key.c: cost of key derivation and prompt normalization. Key derivation: a typical request
 * (300-byte prompt, 10 params) parsed and keyed in every default layer, median per request, against
 * the SHA-256 of the same canonical documents alone (the floor no implementation gets below) and
 * against Python's json.loads of the request plus hashlib.sha256 of those documents
 * (bench_key_ref.py, run by /usr/bin/python3 in the same run, rounds alternating).
 * Normalization: MB/s per mode over a buffer of prompts, against a plain copy of the same bytes.
 *
 * usage: bench_key [ROUNDS]   (default 31 rounds; medians are printed)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "gencache.h"
#include "bench_util.h"

#ifndef BENCH_SOURCE_DIR
#define BENCH_SOURCE_DIR __FILE__
#endif

static const char PROMPT[] = /* 300 bytes */
    "A cinematic tracking shot of a red fox running through fresh snow at dawn, golden light "
    "filtering through pine trees, breath visible in the cold air, shallow depth of field, "
    "highly detailed fur, volumetric fog, 35mm film grain, soft rim lighting, slow motion, "
    "award winning wildlife photo, 8k";

static volatile size_t sink;

/* The Python baseline (bench_key_ref.py), a process that runs one round per request on its
 * stdin. */
typedef struct python_ref {
    pid_t pid; /* 0: not running */
    FILE *to, *from;
    char files[GENCACHE_MAX_LAYERS + 1][64];
    size_t n_files;
} python_ref;

static bool write_temp(python_ref *py, const void *data, size_t len)
{
    char *path = py->files[py->n_files];
    snprintf(path, sizeof py->files[0], "/tmp/bench_key.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return false;
    py->n_files++;
    bool ok = write(fd, data, len) == (ssize_t)len;
    close(fd);
    return ok;
}

static python_ref python_start(const char *json, size_t json_len, char **docs,
                               const size_t *doc_len, size_t n_docs)
{
    python_ref py = {0};
    char script[4096];
    snprintf(script, sizeof script, "%s", BENCH_SOURCE_DIR);
    char *slash = strrchr(script, '/');
    snprintf(slash ? slash + 1 : script, sizeof script - (slash ? (size_t)(slash + 1 - script) : 0),
             "bench_key_ref.py");
    bool ok = access(script, R_OK) == 0 && access("/usr/bin/python3", X_OK) == 0 &&
              write_temp(&py, json, json_len);
    for (size_t d = 0; ok && d < n_docs; d++)
        ok = write_temp(&py, docs[d], doc_len[d]);
    int in[2], out[2];
    if (!ok || pipe(in) != 0)
        return py;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return py;
    }
    char *argv[GENCACHE_MAX_LAYERS + 4] = {"/usr/bin/python3", script};
    for (size_t i = 0; i < py.n_files; i++)
        argv[2 + i] = py.files[i];
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pid < 0) {
        close(in[1]);
        close(out[0]);
        return py;
    }
    py.pid = pid;
    py.to = fdopen(in[1], "w");
    py.from = fdopen(out[0], "r");
    return py;
}

/* One round of n requests in Python: ns per request, or 0 when the baseline is not running. */
static double python_round(python_ref *py, int n)
{
    double ns = 0;
    if (!py->pid || fprintf(py->to, "%d\n", n) < 0 || fflush(py->to) != 0 ||
        fscanf(py->from, "%lf", &ns) != 1)
        return 0;
    return ns;
}

static void python_stop(python_ref *py)
{
    if (py->pid) {
        fclose(py->to);
        fclose(py->from);
        waitpid(py->pid, NULL, 0);
    }
    for (size_t i = 0; i < py->n_files; i++)
        unlink(py->files[i]);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 31;
    if (rounds < 1)
        rounds = 1;
    char json[4096];
    int n = snprintf(json, sizeof json,
                     "{\"model\": \"wan2.2-t2v-5b\", \"prompt\": \"%s\", \"negative_prompt\": "
                     "\"blurry, low quality\", \"image\": {\"digest\": \"sha256:0123456789abcdef"
                     "0123456789abcdef0123456789abcdef0123456789abcdef\"}, \"seed\": 42, "
                     "\"steps\": 50, \"guidance\": 7.5, \"frames\": 16, \"fps\": 8, \"width\": "
                     "832, \"height\": 480, \"scheduler\": \"unipc\", \"params\": {\"lora\": "
                     "\"pixel-art\", \"lora_scale\": 0.8, \"shift\": 3.0, \"cfg_rescale\": 0.7, "
                     "\"motion\": 127, \"tile\": false, \"vae_tiling\": true, \"eta\": 0.0, "
                     "\"clip_skip\": 2, \"sampler\": \"dpmpp_2m\"}}",
                     PROMPT);
    size_t json_len = (size_t)n;
    gencache_keyspace *ks = NULL;
    if (gencache_keyspace_new(&ks) != 0)
        return 1;
    size_t n_layers = gencache_keyspace_layer_count(ks);
    printf("request: %zu bytes JSON, %zu-byte prompt, 10 params, %zu layers\n", json_len,
           strlen(PROMPT), n_layers);

    /* Keys: parse + every layer, keys alone, the SHA-256 floor and the Python baseline, one
     * round of each in turn, so that load from other processes hits all of them alike. */
    enum { ITERS = 2000 };
    gencache_request *req = NULL;
    if (gencache_request_parse(ks, json, json_len, 0, &req) != 0)
        return 1;
    char *docs[GENCACHE_MAX_LAYERS];
    size_t doc_len[GENCACHE_MAX_LAYERS], n_docs = 0;
    for (size_t l = 0; l < n_layers; l++)
        if (gencache_request_canonical(req, gencache_keyspace_layer_name(ks, l), &docs[n_docs],
                                       &doc_len[n_docs]) == 0)
            n_docs++;
    python_ref py = python_start(json, json_len, docs, doc_len, n_docs);
    double *full = calloc((size_t)rounds, sizeof *full);
    double *keys_only = calloc((size_t)rounds, sizeof *keys_only);
    double *hash_only = calloc((size_t)rounds, sizeof *hash_only);
    double *python = calloc((size_t)rounds, sizeof *python);
    double *vs_hash = calloc((size_t)rounds, sizeof *vs_hash);
    double *vs_python = calloc((size_t)rounds, sizeof *vs_python);
    char key[GENCACHE_KEY_MAX];
    int keyed = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_ns();
        for (int i = 0; i < ITERS; i++) {
            gencache_request *q = NULL;
            if (gencache_request_parse(ks, json, json_len, 0, &q) != 0)
                return 1;
            for (size_t l = 0; l < n_layers; l++)
                keyed += gencache_request_key(q, gencache_keyspace_layer_name(ks, l), key,
                                              sizeof key) == 0;
            gencache_request_free(q);
        }
        full[r] = (bench_now_ns() - t0) / ITERS;
        t0 = bench_now_ns();
        for (int i = 0; i < ITERS; i++)
            for (size_t l = 0; l < n_layers; l++)
                keyed += gencache_request_key(req, gencache_keyspace_layer_name(ks, l), key,
                                              sizeof key) == 0;
        keys_only[r] = (bench_now_ns() - t0) / ITERS;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len;
        t0 = bench_now_ns();
        for (int i = 0; i < ITERS; i++)
            for (size_t d = 0; d < n_docs; d++) {
                EVP_Digest(docs[d], doc_len[d], md, &md_len, EVP_sha256(), NULL);
                sink += md[0];
            }
        hash_only[r] = (bench_now_ns() - t0) / ITERS;
        python[r] = python_round(&py, ITERS);
        vs_hash[r] = full[r] / hash_only[r];
        vs_python[r] = python[r] > 0 ? full[r] / python[r] : 0;
    }
    python_stop(&py);
    sink += (size_t)keyed;
    double mf = bench_median(full, rounds), mk = bench_median(keys_only, rounds),
           mh = bench_median(hash_only, rounds), mp = bench_median(python, rounds);
    double rh = bench_median(vs_hash, rounds), rp = bench_median(vs_python, rounds);
    /* Sorted by bench_median(): element 0 is the fastest round, the least disturbed by other load
     * on a shared machine. */
    printf("fastest rounds: parse + keys %.2f us, keys only %.2f us, SHA-256 only %.2f us, "
           "Python %.2f us\n",
           full[0] / 1e3, keys_only[0] / 1e3, hash_only[0] / 1e3, python[0] / 1e3);
    printf("parse + keys, all layers:   %8.2f us/request (median of %d rounds x %d)\n", mf / 1e3,
           rounds, ITERS);
    printf("keys only (parsed request): %8.2f us/request\n", mk / 1e3);
    printf("SHA-256 of the %zu documents: %6.2f us/request (the floor; keys/floor %.2fx)\n", n_docs,
           mh / 1e3, mk / mh);
    if (mp > 0)
        printf("Python json.loads + hashlib.sha256 of the same request and documents: %.2f "
               "us/request\n",
               mp / 1e3);
    else
        printf("Python baseline: not run (/usr/bin/python3 or bench_key_ref.py missing)\n");
    printf("parse + keys vs the SHA-256 floor: %.2fx (median of the rounds' ratios; goal <= 3x)\n",
           rh);
    if (mp > 0)
        printf("parse + keys vs Python: %.2fx (median of the rounds' ratios; goal <= 1x)\n", rp);
    for (size_t d = 0; d < n_docs; d++)
        gencache_free(docs[d]);
    gencache_request_free(req);
    free(python);
    free(vs_hash);
    free(vs_python);

    /* Normalization throughput, one call per prompt as requests make them: plain ASCII prompts,
     * and prompts with non-ASCII text and entities (which safe/clip leave alone after one scan). */
    const char *samples[] = {
        PROMPT,
        "  portrait of a  Woman,   oil painting \t by John Singer Sargent, trending on artstation ",
        "caf\xc3\xa9 au lait, \xe2\x80\x9cmoody\xe2\x80\x9d lighting, \xef\xbc\xa6ull-width, "
        "stra\xc3\x9f"
        "e &amp; colour \xf0\x9f\x90\xb6",
    };
    enum { N_PROMPTS = 3000 };
    size_t total = 0;
    for (int p = 0; p < N_PROMPTS; p++)
        total += strlen(samples[p % 3]);
    char *copy = malloc(4096);
    double *t = calloc((size_t)rounds, sizeof *t);
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_ns();
        for (int p = 0; p < N_PROMPTS; p++) {
            const char *s = samples[p % 3];
            memcpy(copy, s, strlen(s) + 1);
            sink += (unsigned char)copy[0];
        }
        t[r] = bench_now_ns() - t0;
    }
    double copy_ns = bench_median(t, rounds), copy_fast = t[0];
    printf("normalization, %d prompts of %zu bytes on average, one call each (median of %d):\n",
           N_PROMPTS, total / N_PROMPTS, rounds);
    printf("  %-10s %9.0f MB/s  (fastest round %.0f MB/s)\n", "memcpy", total / copy_ns * 1e3,
           total / copy_fast * 1e3);
    for (int m = GENCACHE_NORM_EXACT; m <= GENCACHE_NORM_AGGRESSIVE; m++) {
        if (m == GENCACHE_NORM_TOKENS)
            continue;
        for (int r = 0; r < rounds; r++) {
            double t0 = bench_now_ns();
            for (int p = 0; p < N_PROMPTS; p++) {
                const char *s = samples[p % 3];
                char *out = NULL;
                size_t out_len = 0;
                if (gencache_normalize((gencache_norm_mode)m, s, strlen(s), &out, &out_len) != 0)
                    return 1;
                sink += out_len;
                gencache_free(out);
            }
            t[r] = bench_now_ns() - t0;
        }
        double ns = bench_median(t, rounds);
        printf("  %-10s %9.0f MB/s  %6.2f us/prompt  (%.1fx the copy's time; fastest round %.0f "
               "MB/s)\n",
               gencache_norm_mode_name((gencache_norm_mode)m), total / ns * 1e3,
               ns / N_PROMPTS / 1e3, ns / copy_ns, total / t[0] * 1e3);
    }
    free(copy);
    free(t);
    free(full);
    free(keys_only);
    free(hash_only);
    gencache_keyspace_free(ks);
    return 0;
}
