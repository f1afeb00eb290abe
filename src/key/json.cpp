/*
 * json.cpp: the JSON reader of src/key/ (json.h), a small C++ shim over simdjson's On Demand
 * API. simdjson validates the whole text (UTF-8 included) in one vectorized pass and unescapes
 * each string once; this file walks the document in order and writes the flat tree that the C
 * code reads, keeping each number's literal (its text) for the key encoding. One parser per
 * thread is reused, so a parse allocates only the tree. No exception leaves this file, and no
 * standard-library template is instantiated here (they would be exported from the library).
 */
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

#include <simdjson.h>

#include "json.h"

namespace
{

namespace od = simdjson::ondemand;

/* Requests up to this size reuse the thread's parser and padded copy; larger ones (rare: the
 * limit is 1 MiB) get their own, so a thread does not keep a large buffer alive. */
constexpr size_t REUSE_MAX = 64 * 1024;

struct walker {
    gencache__json *doc;
    const char *base; /* the padded copy of the text: number offsets are relative to it */
    size_t strings_cap;
    char *err;
    size_t err_size;

    int fail(int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)))
    {
        if (err && err_size > 0) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err, err_size, fmt, ap);
            va_end(ap);
        }
        return rc;
    }

    int parse_error(simdjson::error_code e)
    {
        if (e == simdjson::DEPTH_ERROR)
            return fail(GENCACHE_ELIMIT, "invalid JSON: nested deeper than %d levels",
                        GENCACHE__JSON_MAX_DEPTH);
        if (e == simdjson::MEMALLOC)
            return GENCACHE_ENOMEM;
        return fail(GENCACHE_EPARSE, "invalid JSON: %s", simdjson::error_message(e));
    }

    /* Appends a node; returns its index, or -1 when memory ran out. */
    long add(gencache__jtype type)
    {
        if (doc->n_nodes == doc->cap_nodes) {
            size_t cap = doc->cap_nodes ? doc->cap_nodes * 2 : 64;
            void *p = realloc(doc->nodes, cap * sizeof *doc->nodes);
            if (!p)
                return -1;
            doc->nodes = static_cast<gencache__jnode *>(p);
            doc->cap_nodes = cap;
        }
        gencache__jnode *n = &doc->nodes[doc->n_nodes];
        memset(n, 0, sizeof *n);
        n->type = type;
        return static_cast<long>(doc->n_nodes++);
    }

    /* Copies an unescaped string into the arena, NUL-terminated; *off gets where. A decoded
     * string is never longer than its quoted source, so the arena sized by the text fits. */
    int keep(std::string_view s, const char *what, uint32_t *off)
    {
        if (memchr(s.data(), '\0', s.size()))
            return fail(GENCACHE_EPARSE, "invalid JSON: \\u0000 in a %s", what);
        if (s.size() + 1 > strings_cap - doc->strings_len)
            return fail(GENCACHE_EPARSE, "invalid JSON: string arena overflow");
        *off = static_cast<uint32_t>(doc->strings_len);
        memcpy(doc->strings + doc->strings_len, s.data(), s.size());
        doc->strings_len += s.size();
        doc->strings[doc->strings_len++] = '\0';
        return GENCACHE_OK;
    }

    /* True when lit is a JSON number (RFC 8259 grammar): then a failed conversion means a
     * value beyond binary64, not a malformed literal. */
    static bool number_grammar(std::string_view lit)
    {
        size_t i = 0, n = lit.size();
        auto digits = [&] {
            size_t s = i;
            while (i < n && lit[i] >= '0' && lit[i] <= '9')
                i++;
            return i > s;
        };
        if (i < n && lit[i] == '-')
            i++;
        if (i < n && lit[i] == '0')
            i++;
        else if (!digits())
            return false;
        if (i < n && lit[i] == '.') {
            i++;
            if (!digits())
                return false;
        }
        if (i < n && (lit[i] == 'e' || lit[i] == 'E')) {
            i++;
            if (i < n && (lit[i] == '+' || lit[i] == '-'))
                i++;
            if (!digits())
                return false;
        }
        return i == n;
    }

    int number(od::value &v, size_t idx)
    {
        std::string_view raw = v.raw_json_token();
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t' || raw.back() == '\n' ||
                                raw.back() == '\r'))
            raw.remove_suffix(1);
        double x;
        if (v.get_double().get(x) != simdjson::SUCCESS) {
            if (number_grammar(raw))
                return fail(GENCACHE_ELIMIT, "invalid JSON: number %.*s is out of range",
                            static_cast<int>(raw.size() < 40 ? raw.size() : 40), raw.data());
            return fail(GENCACHE_EPARSE, "invalid JSON: bad number '%.*s'",
                        static_cast<int>(raw.size() < 40 ? raw.size() : 40), raw.data());
        }
        doc->nodes[idx].num = x;
        doc->nodes[idx].off = static_cast<uint32_t>(raw.data() - base);
        doc->nodes[idx].len = static_cast<uint32_t>(raw.size());
        return GENCACHE_OK;
    }

    static int cmp_names(const void *a, const void *b)
    {
        return strcmp(*static_cast<const char *const *>(a), *static_cast<const char *const *>(b));
    }

    int duplicate(const char *name)
    {
        return fail(GENCACHE_EPARSE, "invalid JSON: duplicate name '%.64s'", name);
    }

    /* Refuses an object whose members repeat a name (JSON allows it; a request must not). Names
     * hold no NUL (keep() refused it), so they compare as C strings. A request's objects are
     * small: compared pairwise up to 32 members, sorted beyond. */
    int unique_names(size_t obj)
    {
        const gencache__jnode *nodes = doc->nodes;
        size_t n = nodes[obj].count;
        if (n <= 32) {
            for (size_t i = obj + 1; i < nodes[obj].end; i = nodes[i].end)
                for (size_t j = nodes[i].end; j < nodes[obj].end; j = nodes[j].end)
                    if (nodes[i].name_len == nodes[j].name_len &&
                        memcmp(doc->strings + nodes[i].name_off, doc->strings + nodes[j].name_off,
                               nodes[i].name_len) == 0)
                        return duplicate(doc->strings + nodes[i].name_off);
            return GENCACHE_OK;
        }
        const char **names = static_cast<const char **>(malloc(n * sizeof *names));
        if (!names)
            return GENCACHE_ENOMEM;
        size_t k = 0;
        for (size_t i = obj + 1; i < nodes[obj].end; i = nodes[i].end)
            names[k++] = doc->strings + nodes[i].name_off;
        qsort(names, k, sizeof *names, cmp_names);
        int rc = GENCACHE_OK;
        for (size_t i = 1; i < k && rc == GENCACHE_OK; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                rc = duplicate(names[i]);
        free(names);
        return rc;
    }

    int value(od::value v, int depth, std::string_view name, bool named);

    int members(od::object obj, size_t idx, int depth)
    {
        uint32_t count = 0;
        for (auto f : obj) {
            od::field field;
            simdjson::error_code e = std::move(f).get(field);
            std::string_view key;
            if (e == simdjson::SUCCESS)
                e = field.unescaped_key().get(key);
            if (e != simdjson::SUCCESS)
                return parse_error(e);
            int rc = value(field.value(), depth + 1, key, true);
            if (rc != GENCACHE_OK)
                return rc;
            count++;
        }
        doc->nodes[idx].count = count;
        doc->nodes[idx].end = static_cast<uint32_t>(doc->n_nodes);
        return count > 1 ? unique_names(idx) : GENCACHE_OK;
    }

    int elements(od::array arr, size_t idx, int depth)
    {
        uint32_t count = 0;
        for (auto el : arr) {
            od::value v;
            simdjson::error_code e = std::move(el).get(v);
            if (e != simdjson::SUCCESS)
                return parse_error(e);
            int rc = value(v, depth + 1, {}, false);
            if (rc != GENCACHE_OK)
                return rc;
            count++;
        }
        doc->nodes[idx].count = count;
        doc->nodes[idx].end = static_cast<uint32_t>(doc->n_nodes);
        return GENCACHE_OK;
    }
};

int walker::value(od::value v, int depth, std::string_view name, bool named)
{
    if (depth > GENCACHE__JSON_MAX_DEPTH)
        return fail(GENCACHE_ELIMIT, "invalid JSON: nested deeper than %d levels",
                    GENCACHE__JSON_MAX_DEPTH);
    od::json_type t;
    simdjson::error_code e = v.type().get(t);
    if (e != simdjson::SUCCESS)
        return parse_error(e);
    gencache__jtype jt = GENCACHE__J_NULL;
    switch (t) {
    case od::json_type::array:
        jt = GENCACHE__J_ARRAY;
        break;
    case od::json_type::object:
        jt = GENCACHE__J_OBJECT;
        break;
    case od::json_type::number:
        jt = GENCACHE__J_NUMBER;
        break;
    case od::json_type::string:
        jt = GENCACHE__J_STRING;
        break;
    case od::json_type::boolean:
        jt = GENCACHE__J_FALSE;
        break;
    case od::json_type::null:
        jt = GENCACHE__J_NULL;
        break;
    }
    long idx = add(jt);
    if (idx < 0)
        return GENCACHE_ENOMEM;
    if (named) {
        uint32_t off = 0;
        int rc = keep(name, "name", &off);
        if (rc != GENCACHE_OK)
            return rc;
        doc->nodes[idx].name_off = off;
        doc->nodes[idx].name_len = static_cast<uint32_t>(name.size());
    }
    doc->nodes[idx].end = static_cast<uint32_t>(idx + 1);
    switch (jt) {
    case GENCACHE__J_ARRAY: {
        od::array arr;
        if ((e = v.get_array().get(arr)) != simdjson::SUCCESS)
            return parse_error(e);
        return elements(arr, static_cast<size_t>(idx), depth);
    }
    case GENCACHE__J_OBJECT: {
        od::object obj;
        if ((e = v.get_object().get(obj)) != simdjson::SUCCESS)
            return parse_error(e);
        return members(obj, static_cast<size_t>(idx), depth);
    }
    case GENCACHE__J_NUMBER:
        return number(v, static_cast<size_t>(idx));
    case GENCACHE__J_STRING: {
        std::string_view s;
        if ((e = v.get_string().get(s)) != simdjson::SUCCESS)
            return parse_error(e);
        uint32_t off = 0;
        int rc = keep(s, "string", &off);
        doc->nodes[idx].off = off;
        doc->nodes[idx].len = static_cast<uint32_t>(s.size());
        return rc;
    }
    case GENCACHE__J_FALSE: {
        bool b;
        if ((e = v.get_bool().get(b)) != simdjson::SUCCESS)
            return parse_error(e);
        doc->nodes[idx].type = b ? GENCACHE__J_TRUE : GENCACHE__J_FALSE;
        return GENCACHE_OK;
    }
    default: {
        bool is_null = false;
        if ((e = v.is_null().get(is_null)) != simdjson::SUCCESS || !is_null)
            return parse_error(e != simdjson::SUCCESS ? e : simdjson::N_ATOM_ERROR);
        return GENCACHE_OK;
    }
    }
}

/* A copy of the text with the zeroed padding simdjson reads past the end. */
struct padded {
    char *data;
    size_t cap;

    bool fit(const char *text, size_t len)
    {
        size_t need = len + simdjson::SIMDJSON_PADDING;
        if (need > cap) {
            char *p = static_cast<char *>(realloc(data, need));
            if (!p)
                return false;
            data = p;
            cap = need;
        }
        if (len)
            memcpy(data, text, len);
        memset(data + len, 0, simdjson::SIMDJSON_PADDING);
        return true;
    }
};

struct thread_state {
    od::parser parser;
    padded text{nullptr, 0};
    ~thread_state()
    {
        free(text.data);
    }
};

thread_local thread_state tls;

int parse_with(od::parser &parser, padded &copy, const char *text, size_t len, walker &w)
{
    if (!copy.fit(text, len))
        return GENCACHE_ENOMEM;
    w.base = copy.data;
    /* simdjson's own depth bound sits above ours, so walker::value() is what refuses. */
    constexpr size_t depth = GENCACHE__JSON_MAX_DEPTH + 8;
    simdjson::error_code e = simdjson::SUCCESS;
    if (parser.capacity() < len || parser.max_depth() != depth)
        e = parser.allocate(len < 4096 ? 4096 : len, depth);
    if (e != simdjson::SUCCESS)
        return w.parse_error(e);
    od::document d;
    e = parser.iterate(copy.data, len, copy.cap).get(d);
    od::object root;
    if (e == simdjson::SUCCESS) {
        od::json_type t;
        e = d.type().get(t);
        if (e == simdjson::SUCCESS && t != od::json_type::object)
            return w.fail(GENCACHE_EPARSE, "invalid JSON: the request must be a JSON object");
    }
    if (e == simdjson::SUCCESS)
        e = d.get_object().get(root);
    if (e != simdjson::SUCCESS)
        return w.parse_error(e);
    long idx = w.add(GENCACHE__J_OBJECT);
    if (idx < 0)
        return GENCACHE_ENOMEM;
    int rc = w.members(root, 0, 0);
    if (rc != GENCACHE_OK)
        return rc;
    /* The object must be all there is (simdjson stops reading after it). */
    const char *rest;
    if (d.current_location().get(rest) == simdjson::SUCCESS)
        return w.fail(GENCACHE_EPARSE, "invalid JSON: text after the request object");
    return GENCACHE_OK;
}

} // namespace

extern "C" int gencache__json_parse(const char *text, size_t len, gencache__json *doc, char *err,
                                    size_t err_size)
{
    memset(doc, 0, sizeof *doc);
    walker w{doc, nullptr, len + 1, err, err_size};
    try {
        doc->strings = static_cast<char *>(malloc(len + 1));
        if (!doc->strings)
            return GENCACHE_ENOMEM;
        if (len <= REUSE_MAX)
            return parse_with(tls.parser, tls.text, text, len, w);
        od::parser parser;
        padded copy{nullptr, 0};
        int rc = parse_with(parser, copy, text, len, w);
        free(copy.data);
        return rc;
    } catch (const std::bad_alloc &) {
        return GENCACHE_ENOMEM;
    } catch (...) {
        return w.fail(GENCACHE_EPARSE, "invalid JSON");
    }
}

extern "C" void gencache__json_free(gencache__json *doc)
{
    if (!doc)
        return;
    free(doc->nodes);
    free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

extern "C" long gencache__json_member(const gencache__json *doc, size_t obj, const char *name)
{
    const gencache__jnode *n = doc->nodes;
    size_t len = strlen(name);
    for (size_t i = obj + 1; i < n[obj].end; i = n[i].end)
        if (n[i].name_len == len && memcmp(doc->strings + n[i].name_off, name, len) == 0)
            return static_cast<long>(i);
    return -1;
}
