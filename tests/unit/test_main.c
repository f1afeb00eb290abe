/*
 * test_main.c: runs the cases a unit-test file registered. With a case name as argument it runs
 * that case alone (how CTest calls it); with none it runs them all in order.
 */
#include <stdarg.h>

#include "test.h"

#define MAX_CASES 512

static struct {
    const char *name;
    test_fn fn;
} cases[MAX_CASES];
static int n_cases;

void test_register(const char *name, test_fn fn)
{
    if (n_cases == MAX_CASES) {
        fprintf(stderr, "too many test cases\n");
        exit(2);
    }
    cases[n_cases].name = name;
    cases[n_cases].fn = fn;
    n_cases++;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

int main(int argc, char **argv)
{
    /* Constructors register in an order the toolchain chooses; run in source order by name
     * lookup when asked for one, else in registration order. */
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n_cases; i++)
            printf("%s\n", cases[i].name);
        return 0;
    }
    int ran = 0;
    for (int i = 0; i < n_cases; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        printf("case %s\n", cases[i].name);
        fflush(stdout);
        cases[i].fn();
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no case named %s\n", argc > 1 ? argv[1] : "(any)");
        return 2;
    }
    printf("%d passed, 0 failed\n", ran);
    return 0;
}
