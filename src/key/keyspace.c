/*
 * keyspace.c: layer recipes (the parameter-sensitivity matrix of DESIGN.md section 2), the prompt
 * normalization mode per model and the aggressive mode's synonyms. A keyspace is configured once,
 * then only read; requests hold a reference to the keyspace they were parsed with, so a recipe is
 * never freed under a request that still derives keys from it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

static void recipe_clear(gencache__layer_recipe *r)
{
    for (size_t i = 0; i < r->n_fields; i++)
        free(r->fields[i].name);
    free(r->fields);
    r->fields = NULL;
    r->n_fields = 0;
}

static bool layer_name_ok(const char *name)
{
    size_t n = strlen(name);
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
        if (c == '.' && f[i + 1] == '.')
            return false;
    }
    return true;
}

int gencache_keyspace_set_layer(gencache_keyspace *ks, const char *layer, const char *const *fields,
                                size_t n_fields, gencache_scope scope)
{
    if (!ks || !layer || !fields || n_fields == 0 || !layer_name_ok(layer))
        return GENCACHE_EINVAL;
    if (scope != GENCACHE_SCOPE_GLOBAL && scope != GENCACHE_SCOPE_TENANT &&
        scope != GENCACHE_SCOPE_SESSION)
        return GENCACHE_EINVAL;
    if (n_fields > GENCACHE__KEY_MAX_FIELDS_PER_LAYER)
        return GENCACHE_ELIMIT;
    gencache__layer_recipe r = {0};
    r.fields = calloc(n_fields, sizeof *r.fields);
    if (!r.fields)
        return GENCACHE_ENOMEM;
    for (size_t i = 0; i < n_fields; i++) {
        const char *f = fields[i];
        if (!f) {
            recipe_clear(&r);
            return GENCACHE_EINVAL;
        }
        size_t n = strlen(f);
        bool required = n > 1 && f[n - 1] == '!';
        if (required)
            n--;
        if (!field_name_ok(f, n) || (required && n == 1 && f[0] == '*')) {
            recipe_clear(&r);
            return GENCACHE_EINVAL;
        }
        gencache__recipe_field *rf = &r.fields[r.n_fields++];
        rf->name = strndup(f, n);
        if (!rf->name) {
            recipe_clear(&r);
            return GENCACHE_ENOMEM;
        }
        rf->len = n;
        rf->required = required;
        rf->all = n == 1 && f[0] == '*';
        if (rf->all || (n == 4 && memcmp(f, "seed", 4) == 0))
            r.seeded = true;
    }
    snprintf(r.name, sizeof r.name, "%s", layer);
    r.scope = scope;
    for (size_t i = 0; i < ks->n_layers; i++) {
        if (strcmp(ks->layers[i].name, layer) == 0) {
            recipe_clear(&ks->layers[i]);
            ks->layers[i] = r;
            return GENCACHE_OK;
        }
    }
    if (ks->n_layers == GENCACHE_MAX_LAYERS) {
        recipe_clear(&r);
        return GENCACHE_ELIMIT;
    }
    ks->layers[ks->n_layers++] = r;
    return GENCACHE_OK;
}

int gencache_keyspace_new(gencache_keyspace **out)
{
    if (!out)
        return GENCACHE_EINVAL;
    *out = NULL;
    gencache_keyspace *ks = calloc(1, sizeof *ks);
    if (!ks)
        return GENCACHE_ENOMEM;
    atomic_init(&ks->refs, 1);
    ks->default_mode = GENCACHE_NORM_SAFE;
    static const char *const result[] = {"*"};
    static const char *const image_latent[] = {"model",  "image!", "width",
                                               "height", "crop",   "rotation"};
    static const char *const text_embedding[] = {"model", "prompt", "negative_prompt"};
    static const char *const condition[] = {"model", "prompt", "negative_prompt",
                                            "image", "width",  "height"};
    static const char *const session[] = {"name"};
    int rc = gencache_keyspace_set_layer(ks, "result", result, 1, GENCACHE_SCOPE_TENANT);
    if (rc == GENCACHE_OK)
        rc =
            gencache_keyspace_set_layer(ks, "image_latent", image_latent, 6, GENCACHE_SCOPE_GLOBAL);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_set_layer(ks, "text_embedding", text_embedding, 3,
                                         GENCACHE_SCOPE_GLOBAL);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_set_layer(ks, "condition", condition, 6, GENCACHE_SCOPE_TENANT);
    if (rc == GENCACHE_OK)
        rc = gencache_keyspace_set_layer(ks, "session", session, 1, GENCACHE_SCOPE_SESSION);
    if (rc != GENCACHE_OK) {
        gencache_keyspace_free(ks);
        return rc;
    }
    *out = ks;
    return GENCACHE_OK;
}

void gencache_keyspace_free(gencache_keyspace *ks)
{
    if (!ks || atomic_fetch_sub(&ks->refs, 1) != 1)
        return;
    for (size_t i = 0; i < ks->n_layers; i++)
        recipe_clear(&ks->layers[i]);
    for (size_t i = 0; i < ks->n_modes; i++)
        free(ks->modes[i].model);
    free(ks->modes);
    for (size_t i = 0; i < ks->n_synonyms; i++) {
        free(ks->synonyms[i].from);
        free(ks->synonyms[i].to);
    }
    free(ks->synonyms);
    free(ks);
}

gencache_keyspace *gencache__keyspace_retain(const gencache_keyspace *cks)
{
    gencache_keyspace *ks = (gencache_keyspace *)cks;
    atomic_fetch_add(&ks->refs, 1);
    return ks;
}

static _Atomic(gencache_keyspace *) default_ks;
static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;

gencache_keyspace *gencache__keyspace_default(void)
{
    /* Not pthread_once: an allocation failure must not leave the defaults missing for good. */
    gencache_keyspace *ks = atomic_load(&default_ks);
    if (ks)
        return ks;
    pthread_mutex_lock(&default_lock);
    ks = atomic_load(&default_ks);
    if (!ks && gencache_keyspace_new(&ks) == GENCACHE_OK)
        atomic_store(&default_ks, ks);
    pthread_mutex_unlock(&default_lock);
    return ks;
}

int gencache_keyspace_set_mode(gencache_keyspace *ks, const char *model, gencache_norm_mode mode)
{
    if (!ks || !gencache_norm_mode_name(mode))
        return GENCACHE_EINVAL;
    if (!model) {
        ks->default_mode = mode;
        return GENCACHE_OK;
    }
    for (size_t i = 0; i < ks->n_modes; i++) {
        if (strcmp(ks->modes[i].model, model) == 0) {
            ks->modes[i].mode = mode;
            return GENCACHE_OK;
        }
    }
    gencache__model_mode *m = realloc(ks->modes, (ks->n_modes + 1) * sizeof *m);
    if (!m)
        return GENCACHE_ENOMEM;
    ks->modes = m;
    char *name = strdup(model);
    if (!name)
        return GENCACHE_ENOMEM;
    m[ks->n_modes].model = name;
    m[ks->n_modes].mode = mode;
    ks->n_modes++;
    return GENCACHE_OK;
}

gencache_norm_mode gencache__keyspace_mode_for(const gencache_keyspace *ks, const char *model)
{
    if (model) {
        for (size_t i = 0; i < ks->n_modes; i++)
            if (strcmp(ks->modes[i].model, model) == 0)
                return ks->modes[i].mode;
    }
    return ks->default_mode;
}

const gencache__layer_recipe *gencache__keyspace_find(const gencache_keyspace *ks,
                                                      const char *layer)
{
    for (size_t i = 0; i < ks->n_layers; i++)
        if (strcmp(ks->layers[i].name, layer) == 0)
            return &ks->layers[i];
    return NULL;
}

static int cmp_synonym(const void *a, const void *b)
{
    return strcmp(((const gencache__synonym *)a)->from, ((const gencache__synonym *)b)->from);
}

int gencache_keyspace_add_synonym(gencache_keyspace *ks, const char *from, const char *to)
{
    if (!ks || !from || !to)
        return GENCACHE_EINVAL;
    gencache__buf f = {0}, t = {0};
    int rc = gencache__key_normalize(GENCACHE_NORM_AGGRESSIVE, from, strlen(from), NULL, 0, &f);
    if (rc == GENCACHE_OK)
        rc = gencache__key_normalize(GENCACHE_NORM_AGGRESSIVE, to, strlen(to), NULL, 0, &t);
    if (rc == GENCACHE_OK && (!gencache__buf_terminate(&f) || !gencache__buf_terminate(&t)))
        rc = GENCACHE_ENOMEM;
    if (rc == GENCACHE_EPARSE)
        rc = GENCACHE_EINVAL;
    if (rc == GENCACHE_OK && (f.len == 0 || t.len == 0 || memchr(f.data, ' ', f.len)))
        rc = GENCACHE_EINVAL;
    if (rc != GENCACHE_OK)
        goto fail;
    for (size_t i = 0; i < ks->n_synonyms; i++) {
        if (strcmp(ks->synonyms[i].from, f.data) == 0) {
            free(ks->synonyms[i].to);
            ks->synonyms[i].to = t.data;
            gencache__buf_free(&f);
            return GENCACHE_OK;
        }
    }
    if (ks->n_synonyms == GENCACHE__KEY_MAX_SYNONYMS) {
        rc = GENCACHE_ELIMIT;
        goto fail;
    }
    gencache__synonym *s = realloc(ks->synonyms, (ks->n_synonyms + 1) * sizeof *s);
    if (!s) {
        rc = GENCACHE_ENOMEM;
        goto fail;
    }
    ks->synonyms = s;
    s[ks->n_synonyms].from = f.data;
    s[ks->n_synonyms].to = t.data;
    ks->n_synonyms++;
    qsort(ks->synonyms, ks->n_synonyms, sizeof *s, cmp_synonym);
    return GENCACHE_OK;
fail:
    gencache__buf_free(&f);
    gencache__buf_free(&t);
    return rc;
}

size_t gencache_keyspace_layer_count(const gencache_keyspace *ks)
{
    return ks ? ks->n_layers : 0;
}

const char *gencache_keyspace_layer_name(const gencache_keyspace *ks, size_t i)
{
    if (!ks || i >= ks->n_layers)
        return NULL;
    return ks->layers[i].name;
}
