/*
 * layers.c: the layer registry, one entry per layer with its key recipe, scope, TTL, write
 * policy, sharing, normalization mode, eviction policy and image matching, and the one table of
 * default layers (DESIGN.md section 2). A keyspace holds a registry; an open cache owns one
 * keyspace and reads its layers from it, so the cache's TTLs and the keys derived from requests
 * can never disagree about what a layer is.
 */
#include <stdlib.h>
#include <string.h>

#include "key.h"

#define MINUTE_MS (60ull * 1000ull)
#define DAY_MS    (24ull * 60ull * MINUTE_MS)

static const char *const f_result[] = {"*"};
static const char *const f_image_latent[] = {"model",  "image!", "width",
                                             "height", "crop",   "rotation"};
static const char *const f_text_embedding[] = {"model", "prompt", "negative_prompt"};
static const char *const f_condition[] = {"model", "prompt", "negative_prompt",
                                          "image", "width",  "height"};
static const char *const f_session[] = {"name"};

/* The default layers: the only place they are written down. */
static const struct {
    const char *name;
    const char *const *fields;
    size_t n_fields;
    gencache_scope scope;
    uint64_t ttl_ms;
    bool sliding, write_through, shared;
} defaults[] = {
    {"result", f_result, 1, GENCACHE_SCOPE_TENANT, 7 * DAY_MS, true, true, true},
    {"image_latent", f_image_latent, 6, GENCACHE_SCOPE_GLOBAL, 30 * MINUTE_MS, false, false, true},
    {"text_embedding", f_text_embedding, 3, GENCACHE_SCOPE_GLOBAL, 30 * MINUTE_MS, false, false,
     true},
    {"condition", f_condition, 6, GENCACHE_SCOPE_TENANT, 10 * MINUTE_MS, false, false, true},
    /* In-flight state of one generation: not worth a round trip to other nodes. */
    {"session", f_session, 1, GENCACHE_SCOPE_SESSION, 5 * MINUTE_MS, false, false, false},
};

void gencache_layer_options_init(gencache_layer_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->struct_size = sizeof *opts;
    opts->scope = GENCACHE_SCOPE_GLOBAL;
    opts->shared = 1;
    opts->prompt_normalization = -1;
    opts->eviction = GENCACHE_EVICTION_DEFAULT;
    opts->image_match = GENCACHE_IMAGE_MATCH_EXACT;
}

static void recipe_fields_clear(gencache__layer_recipe *r)
{
    for (size_t i = 0; i < r->n_fields; i++) {
        free(r->fields[i].name);
        free(r->specs[i]);
    }
    free(r->fields);
    free(r->specs);
    r->fields = NULL;
    r->specs = NULL;
    r->n_fields = 0;
    r->seeded = false;
}

void gencache__registry_clear(gencache__layer_recipe *r)
{
    recipe_fields_clear(r);
}

static bool layer_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > GENCACHE__LAYER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static bool field_name_ok(const char *f, size_t n)
{
    if (n == 0 || n > GENCACHE__KEY_FIELD_NAME_MAX)
        return false;
    if (n == 1 && f[0] == '*')
        return true;
    if (f[0] == '.' || f[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)f[i];
        if (c < 0x21 || c > 0x7E || c == '=' || c == '*' || c == '!')
            return false;
        if (c == '.' && i + 1 < n && f[i + 1] == '.')
            return false;
    }
    return true;
}

/* Parses fields into r's recipe (r's own fields are left alone on failure). */
static int recipe_parse(gencache__layer_recipe *r, const char *const *fields, size_t n_fields)
{
    if (!fields || n_fields == 0)
        return GENCACHE_EINVAL;
    if (n_fields > GENCACHE__KEY_MAX_FIELDS_PER_LAYER)
        return GENCACHE_ELIMIT;
    gencache__layer_recipe t = {0};
    t.fields = calloc(n_fields, sizeof *t.fields);
    t.specs = calloc(n_fields, sizeof *t.specs);
    if (!t.fields || !t.specs) {
        recipe_fields_clear(&t);
        return GENCACHE_ENOMEM;
    }
    int rc = GENCACHE_OK;
    for (size_t i = 0; i < n_fields && rc == GENCACHE_OK; i++) {
        const char *f = fields[i];
        if (!f) {
            rc = GENCACHE_EINVAL;
            break;
        }
        size_t n = strlen(f);
        bool required = n > 1 && f[n - 1] == '!';
        if (required)
            n--;
        if (!field_name_ok(f, n) || (required && n == 1 && f[0] == '*')) {
            rc = GENCACHE_EINVAL;
            break;
        }
        gencache__recipe_field *rf = &t.fields[t.n_fields];
        rf->name = strndup(f, n);
        t.specs[t.n_fields] = strdup(f);
        t.n_fields++;
        if (!rf->name || !t.specs[t.n_fields - 1]) {
            rc = GENCACHE_ENOMEM;
            break;
        }
        rf->len = n;
        rf->required = required;
        rf->all = n == 1 && f[0] == '*';
        if (rf->all || (n == 4 && memcmp(f, "seed", 4) == 0))
            t.seeded = true;
    }
    if (rc != GENCACHE_OK) {
        recipe_fields_clear(&t);
        return rc;
    }
    recipe_fields_clear(r);
    r->fields = t.fields;
    r->specs = t.specs;
    r->n_fields = t.n_fields;
    r->seeded = t.seeded;
    return GENCACHE_OK;
}

gencache__layer_recipe *gencache__registry_find(gencache_keyspace *ks, const char *layer)
{
    for (size_t i = 0; i < ks->n_layers; i++)
        if (strcmp(ks->layers[i].name, layer) == 0)
            return &ks->layers[i];
    return NULL;
}

int gencache__registry_define(gencache_keyspace *ks, const gencache_layer_options *o)
{
    if (!layer_name_ok(o->name) || (o->fields && o->n_fields == 0))
        return GENCACHE_EINVAL;
    if (o->scope != GENCACHE_SCOPE_GLOBAL && o->scope != GENCACHE_SCOPE_TENANT &&
        o->scope != GENCACHE_SCOPE_SESSION)
        return GENCACHE_EINVAL;
    if (o->prompt_normalization != -1 &&
        !gencache_norm_mode_name((gencache_norm_mode)o->prompt_normalization))
        return GENCACHE_EINVAL;
    if (o->image_match != GENCACHE_IMAGE_MATCH_EXACT &&
        o->image_match != GENCACHE_IMAGE_MATCH_PERCEPTUAL)
        return GENCACHE_EINVAL;
    if (o->eviction < GENCACHE_EVICTION_DEFAULT || o->eviction > GENCACHE_EVICTION_S3FIFO)
        return GENCACHE_EINVAL;
    gencache__layer_recipe *r = gencache__registry_find(ks, o->name);
    gencache__layer_recipe fresh = {0};
    if (!r) {
        if (ks->n_layers == GENCACHE_MAX_LAYERS)
            return GENCACHE_ELIMIT;
        r = &fresh;
        strcpy(r->name, o->name);
    }
    if (o->fields) {
        int rc = recipe_parse(r, o->fields, o->n_fields);
        if (rc != GENCACHE_OK)
            return rc;
    }
    r->scope = o->scope;
    r->ttl_ms = o->ttl_ms;
    r->sliding = o->sliding_ttl != 0;
    r->write_through = o->write_through != 0;
    r->shared = o->shared != 0;
    r->mode = o->prompt_normalization;
    r->eviction = o->eviction;
    r->image_match = o->image_match;
    if (r == &fresh)
        ks->layers[ks->n_layers++] = fresh;
    return GENCACHE_OK;
}

void gencache__registry_options(const gencache__layer_recipe *r, gencache_layer_options *o)
{
    gencache_layer_options_init(o);
    o->name = r->name;
    o->scope = r->scope;
    o->ttl_ms = r->ttl_ms;
    o->sliding_ttl = r->sliding;
    o->write_through = r->write_through;
    o->fields = r->n_fields ? (const char *const *)r->specs : NULL;
    o->n_fields = r->n_fields;
    o->shared = r->shared;
    o->prompt_normalization = r->mode;
    o->eviction = r->eviction;
    o->image_match = r->image_match;
}

int gencache__registry_defaults(gencache_keyspace *ks)
{
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        gencache_layer_options o;
        gencache_layer_options_init(&o);
        o.name = defaults[i].name;
        o.fields = defaults[i].fields;
        o.n_fields = defaults[i].n_fields;
        o.scope = defaults[i].scope;
        o.ttl_ms = defaults[i].ttl_ms;
        o.sliding_ttl = defaults[i].sliding;
        o.write_through = defaults[i].write_through;
        o.shared = defaults[i].shared;
        int rc = gencache__registry_define(ks, &o);
        if (rc != GENCACHE_OK)
            return rc;
    }
    return GENCACHE_OK;
}

int gencache_keyspace_set_layer(gencache_keyspace *ks, const char *layer, const char *const *fields,
                                size_t n_fields, gencache_scope scope)
{
    if (!ks || !layer || !fields || n_fields == 0)
        return GENCACHE_EINVAL;
    gencache_layer_options o;
    gencache_layer_options_init(&o);
    const gencache__layer_recipe *r = gencache__registry_find(ks, layer);
    if (r)
        gencache__registry_options(r, &o);
    o.name = layer;
    o.fields = fields;
    o.n_fields = n_fields;
    o.scope = scope;
    int rc = gencache__registry_define(ks, &o);
    if (rc == GENCACHE_OK && ks->cache)
        rc = gencache__cache_layers_sync(ks->cache);
    return rc;
}
