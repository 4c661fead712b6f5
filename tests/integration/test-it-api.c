/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-api: every opcode's success and error paths through libiomem against the real iomemd, per backend. */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#endif

#include "fdutil.h"
#include "iomem.h"
#include "itutil.h"

#define NAME_MAX_LEN 255 /* docs/protocol.md: names are 1..255 bytes */

static const enum iomem_backend backends[] = { IOMEM_BACKEND_MEMFD, IOMEM_BACKEND_SHM, IOMEM_BACKEND_FILE };

static struct it_daemon daemon_;
static struct iomem_client *client_;

static struct iomem_client *it_connect(void)
{
        return it_client_connect(&daemon_);
}

static struct iomem_region *it_create(const char *name, uint64_t size, uint32_t flags, enum iomem_backend b)
{
        struct iomem_create_opts o = { .flags = flags, .backend = b };
        struct iomem_region *region = NULL;
        int r = iomem_create(client_, name, size, &o, &region);

        ck_assert_msg(r == 0, "create %s: %s", name, iomem_strerror(r));
        return region;
}

static void *it_map(struct iomem_region *region, size_t len, int prot)
{
        void *addr = NULL;
        int r = iomem_region_map(region, 0, len, prot, &addr);

        ck_assert_msg(r == 0, "map: %s", iomem_strerror(r));
        return addr;
}

/* Each test gets its own daemon and one connection; both are gone before the fd-leak check. */
static void setup(void)
{
        test_fd_setup();
        it_daemon_start(&daemon_, NULL);
        client_ = it_connect();
}

static void teardown(void)
{
        client_ = iomem_disconnect(client_);
        it_daemon_stop(&daemon_);
        test_fd_teardown();
}

/* Create, open from another connection, see each other's writes, stat, delete (S4 within the library). */
START_TEST(test_create_open_delete)
{
        enum iomem_backend b = backends[_i];
        struct iomem_client *other = it_connect();
        struct iomem_region *r1, *r2 = NULL, *r3 = NULL;
        struct iomem_stat st;
        char *p1, *p2;
        int r;

        r1 = it_create("it.a", 8192, 0, b);
        ck_assert_uint_eq(iomem_region_size(r1), 8192);
        ck_assert_int_eq(iomem_region_backend(r1), b);
        ck_assert_uint_ne(iomem_region_id(r1), 0);
        ck_assert_uint_eq(iomem_region_flags(r1) & IOMEM_REGION_RDONLY, 0);

        r = iomem_open(other, "it.a", 0, 0, &r2);
        ck_assert_msg(r == 0, "open: %s", iomem_strerror(r));
        ck_assert_uint_eq(iomem_region_id(r2), iomem_region_id(r1));
        ck_assert_uint_eq(iomem_region_size(r2), 8192);

        p1 = it_map(r1, 8192, PROT_READ | PROT_WRITE);
        p2 = it_map(r2, 8192, PROT_READ | PROT_WRITE);
        memcpy(p1 + 5000, "from one", 9);
        ck_assert_str_eq(p2 + 5000, "from one");
        memcpy(p2 + 100, "from two", 9);
        ck_assert_str_eq(p1 + 100, "from two");

        ck_assert_int_eq(iomem_stat(client_, "it.a", &st), 0);
        ck_assert_uint_eq(st.id, iomem_region_id(r1));
        ck_assert_uint_eq(st.size, 8192);
        ck_assert_int_eq(st.backend, b);
        ck_assert_uint_eq(st.uid, getuid());
        ck_assert_uint_eq(st.mode, 0600);
        ck_assert_uint_ge(st.open_count, 1);
        ck_assert_uint_ne(st.ctime_ns, 0);

        ck_assert_int_eq(iomem_delete(client_, "it.a"), 0);
        ck_assert_int_eq(iomem_stat(client_, "it.a", &st), -ENOENT);
        ck_assert_int_eq(iomem_open(other, "it.a", 0, 0, &r3), -ENOENT);
        ck_assert_ptr_null(r3);
        /* mappings and fds handed out earlier stay valid after the name is gone */
        memcpy(p1, "still", 6);
        ck_assert_str_eq(p2, "still");

        iomem_unmap(p1, 8192);
        iomem_unmap(p2, 8192);
        iomem_region_free(r1);
        iomem_region_free(r2);
        iomem_disconnect(other);
}
END_TEST

/* Write @text at @off through a fresh mapping of @region and read it back through another. */
static void it_write_read(struct iomem_region *region, size_t off, const char *text)
{
        char *w = it_map(region, 4096, PROT_READ | PROT_WRITE), *rd = it_map(region, 4096, PROT_READ);

        memcpy(w + off, text, strlen(text) + 1);
        ck_assert_str_eq(rd + off, text);
        iomem_unmap(w, 4096);
        iomem_unmap(rd, 4096);
}

/*
 * Regions outlive the client that opened them, in either order of freeing (iomem.h). Under ASan or valgrind a use
 * after free or a leaked client shows here (it guards any scheme that ties a region's memory to its client's).
 */
START_TEST(test_regions_outlive_client)
{
        struct iomem_region *reg = it_create("it.outlive", 4096, 0, IOMEM_BACKEND_MEMFD), *a = NULL, *b = NULL,
                            *c = NULL;
        struct iomem_client *k;

        reg = iomem_region_free(reg);
        /* disconnect first: both regions still work */
        k = it_connect();
        ck_assert_int_eq(iomem_open(k, "it.outlive", 0, 0, &a), 0);
        ck_assert_int_eq(iomem_open(k, "it.outlive", IOMEM_OPEN_RDONLY, 0, &b), 0);
        k = iomem_disconnect(k);
        it_write_read(a, 100, "after disconnect");
        ck_assert_uint_eq(iomem_region_size(b), 4096);
        ck_assert_uint_ne(iomem_region_flags(b) & IOMEM_REGION_RDONLY, 0);
        a = iomem_region_free(a);
        b = iomem_region_free(b);

        /* regions first, the first one before or after the second; then the client goes on working */
        for (int order = 0; order < 2; order++) {
                k = it_connect();
                ck_assert_int_eq(iomem_open(k, "it.outlive", 0, 0, &a), 0);
                ck_assert_int_eq(iomem_open(k, "it.outlive", 0, 0, &b), 0);
                if (order == 0) {
                        a = iomem_region_free(a);
                        b = iomem_region_free(b);
                } else {
                        b = iomem_region_free(b);
                        a = iomem_region_free(a);
                }
                ck_assert_int_eq(iomem_open(k, "it.outlive", 0, 0, &c), 0);
                it_write_read(c, 200, "third");
                k = iomem_disconnect(k);
                it_write_read(c, 300, "third, after disconnect");
                c = iomem_region_free(c);
        }
}
END_TEST

#define IT_RACERS 4

struct it_racer {
        struct iomem_client *client;
        struct iomem_region *region;
        int r;
};

static void *it_race_open(void *arg)
{
        struct it_racer *x = arg;

        x->r = iomem_open(x->client, "it.race", 0, 0, &x->region);
        return NULL;
}

/*
 * Threads that open on one fresh client at once (the first requests of a connection, HELLO held back in front of
 * one of them); the regions freed in any order, before and after the client (ASan/valgrind see the rest).
 */
START_TEST(test_first_region_race)
{
        struct iomem_region *reg = it_create("it.race", 4096, 0, IOMEM_BACKEND_MEMFD);

        reg = iomem_region_free(reg);
        for (int round = 0; round < 20; round++) {
                struct iomem_client *k = it_connect();
                struct it_racer x[IT_RACERS];
                pthread_t th[IT_RACERS];

                for (int i = 0; i < IT_RACERS; i++) {
                        x[i] = (struct it_racer){ .client = k };
                        ck_assert_int_eq(pthread_create(&th[i], NULL, it_race_open, &x[i]), 0);
                }
                for (int i = 0; i < IT_RACERS; i++) {
                        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
                        ck_assert_msg(x[i].r == 0, "open: %s", iomem_strerror(x[i].r));
                }
                /* half of them before the disconnect, the rest after, a different half each round */
                for (int i = 0; i < IT_RACERS; i++)
                        if ((i + round) % 2 == 0)
                                x[i].region = iomem_region_free(x[i].region);
                k = iomem_disconnect(k);
                for (int i = 0; i < IT_RACERS; i++) {
                        if (!x[i].region)
                                continue;
                        it_write_read(x[i].region, 64 * (size_t)i, "raced");
                        x[i].region = iomem_region_free(x[i].region);
                }
        }
}
END_TEST

/* Create with a mode and the daemon's default backend; an existing name without EXCLUSIVE is opened (same id). */
START_TEST(test_create_existing)
{
        struct iomem_create_opts o = { .mode = 0640, .backend = backends[_i] };
        struct iomem_region *a = NULL, *b = NULL;
        struct iomem_stat st;

        ck_assert_int_eq(iomem_create(client_, "it.mode", 4096, &o, &a), 0);
        ck_assert_int_eq(iomem_stat(client_, "it.mode", &st), 0);
        ck_assert_uint_eq(st.mode, 0640);
        o.flags = IOMEM_CREATE_EXCLUSIVE;
        ck_assert_int_eq(iomem_create(client_, "it.mode", 4096, &o, &b), -EEXIST);
        ck_assert_ptr_null(b);
        o.flags = 0;
        ck_assert_int_eq(iomem_create(client_, "it.mode", 4096, &o, &b), 0);
        ck_assert_uint_eq(iomem_region_id(b), iomem_region_id(a));
        iomem_region_free(a);
        iomem_region_free(b);
}
END_TEST

/*
 * A disconnected client's block and a freed region's are kept for the next ones (client/recycle.h): what comes out
 * of them is as new (no error detail, setting or flag of the last one), and no block goes to two threads at once.
 */
struct recycle_arg {
        const char *socket;
        unsigned k;
};

static void *recycle_thread(void *p)
{
        const struct recycle_arg *a = p;
        char name[32];
        bool ok = true;

        snprintf(name, sizeof(name), "it.rc%u", a->k);
        for (unsigned i = 0; i < 300 && ok; i++) {
                struct iomem_client *c = NULL;
                struct iomem_region *r = NULL;
                void *addr = NULL;

                ok = iomem_connect(a->socket, &c) == 0 && iomem_open(c, name, 0, 0, &r) == 0 &&
                     strcmp(iomem_client_error_message(c), "") == 0 &&
                     iomem_region_size(r) == (a->k + 1) * 4096u && iomem_region_map(r, 0, 0, PROT_READ, &addr) == 0 &&
                     *(volatile unsigned char *)addr == 'a' + a->k;
                if (addr)
                        iomem_unmap(addr, (a->k + 1) * 4096u);
                iomem_region_free(r);
                iomem_disconnect(c);
        }
        return ok ? p : NULL;
}

START_TEST(test_recycle)
{
        struct iomem_region *rc = it_create("it.rc", 4096, 0, IOMEM_BACKEND_MEMFD), *r = NULL, *regions[4];
        struct iomem_client *k = it_connect();
        struct recycle_arg args[4];
        pthread_t threads[4];
        uintptr_t kaddr = (uintptr_t)k, raddr;
        unsigned char *p;

        /* leave state behind: an error detail, settings, a read-only region */
        iomem_client_set_timeout(k, 5000);
        iomem_client_set_reconnect(k, 0);
        ck_assert_int_eq(iomem_open(k, "it.rc", IOMEM_OPEN_RDONLY, 0, &r), 0);
        ck_assert_uint_ne(iomem_region_flags(r) & IOMEM_REGION_RDONLY, 0);
        raddr = (uintptr_t)r;
        r = iomem_region_free(r);
        ck_assert_int_eq(iomem_open(k, "it.none", 0, 0, &r), -ENOENT);
        ck_assert_str_ne(iomem_client_error_message(k), "");
        k = iomem_disconnect(k);
#ifdef __SANITIZE_ADDRESS__
        /* while in their slots, both blocks are poisoned: a use after free is still reported */
        ck_assert(__asan_address_is_poisoned((void *)kaddr));
        ck_assert(__asan_address_is_poisoned((void *)raddr));
#endif

        k = it_connect();
        ck_assert_uint_eq((uintptr_t)k, kaddr); /* the same block... */
        ck_assert_str_eq(iomem_client_error_message(k), ""); /* ...as new */
        ck_assert_uint_eq(iomem_client_reconnects(k), 0);
        ck_assert_int_eq(iomem_open(k, "it.rc", 0, 0, &r), 0);
        ck_assert_uint_eq((uintptr_t)r, raddr);
        ck_assert_uint_eq(iomem_region_flags(r) & IOMEM_REGION_RDONLY, 0);
        ck_assert_uint_eq(iomem_region_id(r), iomem_region_id(rc));
        ck_assert_uint_eq(iomem_region_size(r), 4096);
        p = it_map(r, 4096, PROT_READ | PROT_WRITE);
        p[0] = 'x';
        iomem_unmap(p, 4096);
        r = iomem_region_free(r);
        rc = iomem_region_free(rc);
        k = iomem_disconnect(k);

        /* threads connecting, opening and freeing at once: each must see its own client and region whole */
        for (unsigned i = 0; i < 4; i++) {
                char name[32];

                snprintf(name, sizeof(name), "it.rc%u", i);
                regions[i] = it_create(name, (i + 1) * 4096u, 0, IOMEM_BACKEND_MEMFD);
                p = it_map(regions[i], 1, PROT_READ | PROT_WRITE);
                p[0] = (unsigned char)('a' + i);
                iomem_unmap(p, 1);
                args[i] = (struct recycle_arg){ .socket = daemon_.socket, .k = i };
                ck_assert_int_eq(pthread_create(&threads[i], NULL, recycle_thread, &args[i]), 0);
        }
        for (unsigned i = 0; i < 4; i++) {
                void *ret;

                ck_assert_int_eq(pthread_join(threads[i], &ret), 0);
                ck_assert_msg(ret == &args[i], "thread %u saw another's client or region", i);
                regions[i] = iomem_region_free(regions[i]);
        }
}
END_TEST

/* The error detail of a new client is "" before any error (its buffer comes with the first detail), then the
 * daemon's text after an error reply, then "" again after a call that succeeds. */
START_TEST(test_error_message_lifetime)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_EXCLUSIVE };
        struct iomem_client *c = NULL;
        struct iomem_region *a = NULL, *b = NULL;

        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_str_eq(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_create(c, "it.message", 4096, &o, &a), 0);
        ck_assert_str_eq(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_create(c, "it.message", 4096, &o, &b), -EEXIST);
        ck_assert_ptr_null(b);
        ck_assert_str_ne(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_ping(c), 0);
        ck_assert_str_eq(iomem_client_error_message(c), "");
        iomem_region_free(a);
        iomem_disconnect(c);
}
END_TEST

/* A call that fails its own argument check (a name past PROTO_NAME_MAX) before it asks the daemon leaves no
 * detail of an earlier call: iomem_client_error_message() is not the daemon's text of the call before. */
START_TEST(test_error_message_not_stale)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_EXCLUSIVE };
        struct iomem_client *c = NULL;
        struct iomem_region *a = NULL, *b = NULL;
        struct iomem_stat st;
        char long_name[300]; /* past PROTO_NAME_MAX (255) */
        uint32_t w;

        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        ck_assert_int_eq(iomem_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(iomem_create(c, "it.stale", 4096, &o, &a), 0);
        ck_assert_int_eq(iomem_create(c, "it.stale", 4096, &o, &b), -EEXIST);
        ck_assert_str_ne(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_stat(c, long_name, &st), -EINVAL);
        ck_assert_str_eq(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_create(c, "it.stale", 4096, &o, &b), -EEXIST);
        ck_assert_int_eq(iomem_open(c, long_name, 0, 0, &b), -EINVAL);
        ck_assert_str_eq(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_create(c, "it.stale", 4096, &o, &b), -EEXIST);
        ck_assert_int_eq(iomem_watch(c, long_name, &w), -EINVAL);
        ck_assert_str_eq(iomem_client_error_message(c), "");
        ck_assert_int_eq(iomem_delete(c, "it.stale"), 0);
        iomem_region_free(a);
        iomem_disconnect(c);
}
END_TEST

static void open_none(struct iomem_client *client, int error, struct iomem_region *region, uint64_t generation,
                      void *userdata)
{
        (void)client;
        (void)error;
        (void)region;
        (void)generation;
        (void)userdata;
}

/* An error reply (-EEXIST) on @c, so that its error detail is the daemon's text. */
static void make_detail(struct iomem_client *c)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_EXCLUSIVE };
        struct iomem_region *b = NULL;

        ck_assert_int_eq(iomem_create(c, "it.stale", 4096, &o, &b), -EEXIST);
        ck_assert_str_ne(iomem_client_error_message(c), "");
}

#define CHECK_NOT_STALE(c, call, want)                                      \
        do {                                                                \
                make_detail(c);                                             \
                ck_assert_int_eq((call), (want));                           \
                ck_assert_msg(iomem_client_error_message(c)[0] == '\0',     \
                              "%s left the detail \"%s\"", #call,         \
                              iomem_client_error_message(c));               \
        } while (0)

/* As test_error_message_not_stale, for every other argument check that fails before asking the daemon: NULL
 * pointers, unknown flags, a watch id 0 or unknown, a feature the connection did not ask for. */
START_TEST(test_error_message_not_stale_args)
{
        struct iomem_client *c = it_client_connect_flags(&daemon_, IOMEM_CONNECT_EVENTS), *v1 = it_connect();
        struct iomem_region *a = NULL, *b = NULL;
        struct iomem_event ev;

        ck_assert_int_eq(iomem_create(c, "it.stale", 4096, NULL, &a), 0);
        CHECK_NOT_STALE(c, iomem_create(c, "it.stale2", 4096, NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_open(c, "it.stale", 0x80000000u, 0, &b), -EINVAL);
        CHECK_NOT_STALE(c, iomem_open(c, "it.stale", 0, 0, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_stat(c, "it.stale", NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_list(c, "it.", NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_status(c, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_metrics(c, NULL, NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_quota(c, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_register(c, "it.reg", NULL, 0, 0600, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_register(c, "it.reg", a, 0x80000000u, 0600, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_next_event(c, NULL, 0), -EINVAL);
        CHECK_NOT_STALE(c, iomem_unwatch(c, 0), -EINVAL);
        CHECK_NOT_STALE(c, iomem_unwatch(c, 12345), -ENOENT);
        CHECK_NOT_STALE(c, iomem_publish(c, "it.pub", NULL, NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_publish(c, "it.pub", a, &(struct iomem_publish_opts){ .flags = 0x80000000u }, NULL),
                        -EINVAL);
        CHECK_NOT_STALE(c, iomem_open_version(c, "it.stale", 0, 0, 0, NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_open_version(c, "it.stale", 0x80000000u, 0, 0, &b, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_stat_version(c, "it.stale", NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_open_async(c, "it.stale", 0x80000000u, 0, NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_stat_async(c, "it.stale", NULL, NULL), -EINVAL);
        CHECK_NOT_STALE(c, iomem_ping_async(c, NULL, NULL), -EINVAL);
        /* a connection without the EVENTS feature */
        CHECK_NOT_STALE(v1, iomem_next_event(v1, &ev, 0), -EOPNOTSUPP);
        CHECK_NOT_STALE(v1, iomem_unwatch(v1, 1), -EOPNOTSUPP);
        CHECK_NOT_STALE(v1, iomem_client_set_open_cache(v1, 1), -EOPNOTSUPP);
        CHECK_NOT_STALE(v1, iomem_open_version_async(v1, "it.stale", 0, 0, 0, open_none, NULL), -EOPNOTSUPP);
        ck_assert_ptr_null(b);
        ck_assert_int_eq(iomem_delete(c, "it.stale"), 0);
        iomem_region_free(a);
        iomem_disconnect(v1);
        iomem_disconnect(c);
}
END_TEST

/* F6, F7: names, sizes and unknown names, each answered with its errno; the connection stays usable. */
START_TEST(test_errors)
{
        enum iomem_backend b = backends[_i];
        struct iomem_create_opts o = { .backend = b };
        static const char *const bad_names[] = { "bad name", "bad\nname", "/abs", ".hidden", "a//b", "semi;colon" };
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        char longname[NAME_MAX_LEN + 2];
        uint32_t seals;

        for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
                ck_assert_msg(iomem_create(client_, bad_names[i], 4096, &o, &region) == -EINVAL, "create '%s'",
                              bad_names[i]);
                ck_assert_int_eq(iomem_open(client_, bad_names[i], 0, 0, &region), -EINVAL);
                ck_assert_int_eq(iomem_stat(client_, bad_names[i], &st), -EINVAL);
                ck_assert_int_eq(iomem_delete(client_, bad_names[i]), -EINVAL);
        }
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        ck_assert_int_eq(iomem_create(client_, longname, 4096, &o, &region), -EINVAL);
        longname[sizeof(longname) - 2] = '\0'; /* exactly the maximum */
        ck_assert_int_eq(iomem_create(client_, longname, 4096, &o, &region), 0);
        region = iomem_region_free(region);
        /* iomem_open() checks the name's length as it encodes the request, before the cache and the lock */
        ck_assert_int_eq(iomem_open(client_, longname, 0, 0, &region), 0);
        region = iomem_region_free(region);
        longname[sizeof(longname) - 2] = 'x'; /* one past the maximum */
        ck_assert_int_eq(iomem_open(client_, longname, 0, 0, &region), -EINVAL);
        ck_assert_int_eq(iomem_open(client_, longname, IOMEM_OPEN_RDONLY, 100, &region), -EINVAL);
        ck_assert_int_eq(iomem_open(client_, NULL, 0, 0, &region), -EINVAL);
        ck_assert_int_eq(iomem_open(client_, "it.missing", 0x80, 0, &region), -EINVAL); /* unknown flag */
        ck_assert_int_eq(iomem_open(client_, "", 0, 0, &region), -EINVAL);

        /* R3: terabytes are refused before anything is made */
        ck_assert_int_eq(iomem_create(client_, "it.huge", UINT64_C(1) << 40, &o, &region), -EFBIG);
        ck_assert_int_eq(iomem_create(client_, "it.huge", UINT64_MAX, &o, &region), -EFBIG);
        ck_assert_int_eq(iomem_stat(client_, "it.huge", &st), -ENOENT);

        ck_assert_int_eq(iomem_open(client_, "it.missing", 0, 0, &region), -ENOENT);
        ck_assert_int_eq(iomem_stat(client_, "it.missing", &st), -ENOENT);
        ck_assert_int_eq(iomem_resize(client_, "it.missing", 4096), -ENOENT);
        ck_assert_int_eq(iomem_seal(client_, "it.missing", IOMEM_SEAL_GROW, &seals), -ENOENT);
        ck_assert_int_eq(iomem_delete(client_, "it.missing"), -ENOENT);
        ck_assert_ptr_null(region);

        region = it_create("it.r", 4096, 0, b);
        ck_assert_int_eq(iomem_resize(client_, "it.r", UINT64_C(1) << 40), -EFBIG);
        ck_assert_int_eq(iomem_create(client_, "it.r2", 4096, &(struct iomem_create_opts){ .mode = 01000 },
                                      &(struct iomem_region *){ NULL }),
                         -EINVAL);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_ping(client_), 0);
}
END_TEST

/*
 * A CREATE refused for one of its values says which, and what is allowed, in the error detail. Before, every one
 * was "malformed CREATE", which named neither (the Python and Ruby bindings checked the values themselves for it).
 */
START_TEST(test_create_refusal_says_why)
{
        static const struct {
                const char *name;
                struct iomem_create_opts opts;
                const char *says;
        } cases[] = {
                { "it.why", { .mode = 01000 }, "mode above 0777" },
                { "it.why", { .flags = 0x40000u }, "unknown flags" },
                { "it.why", { .flags = IOMEM_CREATE_HUGE_2MB }, "needs IOMEM_CREATE_HUGE" },
                { "it.why", { .seals = 0x100u }, "unknown seal bits" },
                { "it.why", { .backend = (enum iomem_backend)9 }, "unknown backend" },
                /* a bad name stays "malformed CREATE" (the bindings recognise it and say the rule) */
                { "a//b", { 0 }, "malformed CREATE" },
                { ".hidden", { .mode = 01000 }, "malformed CREATE" }, /* the name first */
        };
        struct iomem_region *region = NULL;
        struct iomem_stat st;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                ck_assert_int_eq(iomem_create(client_, cases[i].name, 4096, &cases[i].opts, &region), -EINVAL);
                ck_assert_msg(strstr(iomem_client_error_message(client_), cases[i].says) != NULL,
                              "case %zu: '%s' does not say '%s'", i, iomem_client_error_message(client_),
                              cases[i].says);
        }
        ck_assert_ptr_null(region);
        ck_assert_int_eq(iomem_stat(client_, "it.why", &st), -ENOENT);
        ck_assert_int_eq(iomem_ping(client_), 0);
}
END_TEST

/*
 * CHMOD, SEAL and REGISTER refused for a value say which, and what is allowed, as CREATE does; before, "malformed
 * CHMOD" (SEAL, REGISTER) named neither. A bad name still says "malformed CHMOD" (the bindings recognise it).
 */
START_TEST(test_refusal_says_why)
{
        struct iomem_region *region = it_create("it.why2", 4096, 0, IOMEM_BACKEND_MEMFD), *local = NULL;
        struct iomem_stat st;
        uint64_t id = 0;
        uint32_t mode;

        ck_assert_int_eq(iomem_stat(client_, "it.why2", &st), 0);
        mode = st.mode;
#define SAYS(call, says)                                                                                            \
        do {                                                                                                        \
                ck_assert_int_eq(call, -EINVAL);                                                                    \
                ck_assert_msg(strstr(iomem_client_error_message(client_), says) != NULL, "%s: '%s' does not say '%s'", \
                              #call, iomem_client_error_message(client_), says);                                   \
        } while (0)
        SAYS(iomem_chmod(client_, "it.why2", 01000), "CHMOD: mode above 0777 (owner/group/other");
        SAYS(iomem_chmod(client_, "a//b", 01000), "malformed CHMOD"); /* the name first */
        SAYS(iomem_seal(client_, "it.why2", 0x100u, NULL), "SEAL: unknown seal bits");
        ck_assert_int_eq(iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &local), 0);
        ck_assert_int_eq(iomem_region_seal(local, IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW), 0);
        SAYS(iomem_register(client_, "it.why3", local, 0, 04755, &id), "REGISTER: mode above 0777");
#undef SAYS
        ck_assert_int_eq(iomem_stat(client_, "it.why2", &st), 0);
        ck_assert_uint_eq(st.mode, mode); /* unchanged by the refusal */
        ck_assert_int_eq(iomem_stat(client_, "it.why3", &st), -ENOENT);
        iomem_region_free(local);
        iomem_region_free(region);
        ck_assert_int_eq(iomem_delete(client_, "it.why2"), 0);
        ck_assert_int_eq(iomem_ping(client_), 0);
}
END_TEST

/* Seals: memfd regions refuse what their seals forbid (EPERM); shm and file cannot be sealed (EOPNOTSUPP). */
START_TEST(test_seal)
{
        enum iomem_backend b = backends[_i];
        struct iomem_region *region = it_create("it.s", 4096, IOMEM_CREATE_RESIZABLE, b);
        struct iomem_stat st;
        uint32_t seals = 0;
        int r;

        r = iomem_seal(client_, "it.s", IOMEM_SEAL_GROW, &seals);
        if (b != IOMEM_BACKEND_MEMFD) {
                ck_assert_int_eq(r, -EOPNOTSUPP);
                ck_assert_int_eq(iomem_resize(client_, "it.s", 8192), 0);
                iomem_region_free(region);
                return;
        }
        ck_assert_msg(r == 0, "seal: %s", iomem_strerror(r));
        ck_assert_uint_eq(seals & IOMEM_SEAL_GROW, IOMEM_SEAL_GROW);
        ck_assert_int_eq(iomem_resize(client_, "it.s", 8192), -EPERM);
        ck_assert_int_eq(iomem_resize(client_, "it.s", 2048), 0); /* shrinking is still allowed */
        ck_assert_int_eq(iomem_stat(client_, "it.s", &st), 0);
        ck_assert_uint_eq(st.size, 2048);
        ck_assert_uint_eq(st.seals & IOMEM_SEAL_GROW, IOMEM_SEAL_GROW);
        ck_assert_int_eq(iomem_region_get_seals(region) & IOMEM_SEAL_GROW, IOMEM_SEAL_GROW);

        ck_assert_int_eq(iomem_seal(client_, "it.s", IOMEM_SEAL_SEAL, &seals), 0);
        ck_assert_int_eq(iomem_seal(client_, "it.s", IOMEM_SEAL_SHRINK, &seals), -EPERM);
        ck_assert_int_eq(iomem_seal(client_, "it.s", 0x8000, &seals), -EINVAL);
        /* sealed against more seals: the daemon then answers from what it saw (no F_GET_SEALS), still exactly */
        ck_assert_int_lt(iomem_region_seal(region, IOMEM_SEAL_WRITE), 0); /* a holder cannot add any either */
        for (int i = 0; i < 2; i++) {
                struct iomem_region *opened = NULL;

                ck_assert_int_eq(iomem_stat(client_, "it.s", &st), 0);
                ck_assert_uint_eq(st.seals & 0x1f, IOMEM_SEAL_SEAL | IOMEM_SEAL_GROW);
                ck_assert_uint_eq(st.seals & 0x1f, (uint32_t)iomem_region_get_seals(region) & 0x1f);
                ck_assert_int_eq(iomem_open(client_, "it.s", 0, 0, &opened), 0);
                ck_assert_uint_eq((uint32_t)iomem_region_get_seals(opened) & 0x1f, IOMEM_SEAL_SEAL | IOMEM_SEAL_GROW);
                iomem_region_free(opened);
        }
        iomem_region_free(region);
}
END_TEST

/* S2: F_SEAL_WRITE while a writable mapping exists is -EBUSY, and the region is still usable. */
START_TEST(test_seal_write_busy)
{
        struct iomem_region *region = it_create("it.w", 4096, 0, IOMEM_BACKEND_MEMFD);
        char *p = it_map(region, 4096, PROT_READ | PROT_WRITE);

        ck_assert_int_eq(iomem_seal(client_, "it.w", IOMEM_SEAL_WRITE, NULL), -EBUSY);
        iomem_unmap(p, 4096);
        ck_assert_int_eq(iomem_seal(client_, "it.w", IOMEM_SEAL_WRITE, NULL), 0);
        /* once sealed, a writable shared mapping is refused by the kernel */
        ck_assert_int_lt(iomem_region_map(region, 0, 4096, PROT_READ | PROT_WRITE, (void **)&p), 0);
        p = it_map(region, 4096, PROT_READ);
        iomem_unmap(p, 4096);
        iomem_region_free(region);
}
END_TEST

/* A read-only open gives an fd that cannot be mapped for writing, by the library or by mmap itself (P4). */
START_TEST(test_read_only)
{
        enum iomem_backend b = backends[_i];
        struct iomem_region *rw = it_create("it.ro", 4096, 0, b), *ro = NULL;
        char *prw, *pro;
        void *addr = NULL;

        prw = it_map(rw, 4096, PROT_READ | PROT_WRITE);
        memcpy(prw, "written", 8);
        ck_assert_int_eq(iomem_open(client_, "it.ro", IOMEM_OPEN_RDONLY, 0, &ro), 0);
        ck_assert_uint_eq(iomem_region_flags(ro) & IOMEM_REGION_RDONLY, IOMEM_REGION_RDONLY);
        ck_assert_int_eq(iomem_region_map(ro, 0, 4096, PROT_READ | PROT_WRITE, &addr), -EACCES);
        ck_assert_ptr_eq(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, iomem_region_fd(ro), 0), MAP_FAILED);
        ck_assert_int_eq(errno, EACCES);
        ck_assert_int_lt(write(iomem_region_fd(ro), "x", 1), 0);
        ck_assert_int_lt(ftruncate(iomem_region_fd(ro), 0), 0);
        pro = it_map(ro, 4096, PROT_READ);
        ck_assert_str_eq(pro, "written");
        ck_assert_int_lt(mprotect(pro, 4096, PROT_READ | PROT_WRITE), 0);
        memcpy(prw, "changed", 8);
        ck_assert_str_eq(pro, "changed");
        iomem_unmap(prw, 4096);
        iomem_unmap(pro, 4096);
        iomem_region_free(rw);
        iomem_region_free(ro);
}
END_TEST

/* RESIZE: growing is seen by the holder of another fd after a refresh; shrinking needs RESIZABLE. */
START_TEST(test_resize)
{
        enum iomem_backend b = backends[_i];
        struct iomem_region *fixed = it_create("it.fixed", 4096, 0, b);
        struct iomem_region *res = it_create("it.res", 4096, IOMEM_CREATE_RESIZABLE, b);
        struct iomem_stat st;

        if (b == IOMEM_BACKEND_MEMFD) {
                /* a named memfd not created RESIZABLE is sealed SHRINK and GROW: its size never changes */
                ck_assert_int_eq(iomem_resize(client_, "it.fixed", 16384), -EPERM);
                ck_assert_int_eq(iomem_resize(client_, "it.fixed", 4096), 0);
                ck_assert_int_eq(iomem_resize(client_, "it.fixed", 1024), -EPERM);
                ck_assert_int_eq(iomem_resize(client_, "it.res", 16384), 0);
                ck_assert_int_eq(iomem_resize(client_, "it.res", 4096), 0);
        } else {
                ck_assert_int_eq(iomem_resize(client_, "it.fixed", 16384), 0);
                ck_assert_int_eq(iomem_region_refresh(fixed), 0);
                ck_assert_uint_eq(iomem_region_size(fixed), 16384);
                ck_assert_int_eq(iomem_stat(client_, "it.fixed", &st), 0);
                ck_assert_uint_eq(st.size, 16384);
        }

        ck_assert_int_eq(iomem_resize(client_, "it.res", 1024), 0);
        ck_assert_int_eq(iomem_region_refresh(res), 0);
        ck_assert_uint_eq(iomem_region_size(res), 1024);
        iomem_region_free(fixed);
        iomem_region_free(res);
}
END_TEST

struct list_count {
        unsigned n;
        unsigned with_prefix;
        const char *prefix;
        int stop_after;
};

static int count_cb(const struct iomem_list_entry *e, void *userdata)
{
        struct list_count *c = userdata;

        c->n++;
        if (c->prefix && !strncmp(e->name, c->prefix, strlen(c->prefix)))
                c->with_prefix++;
        ck_assert_uint_eq(e->size, 4096);
        ck_assert_uint_ne(e->id, 0);
        return c->stop_after && (int)c->n == c->stop_after ? 42 : 0;
}

/* LIST: everything, by prefix, and a callback that stops the walk; anonymous regions are not listed. */
START_TEST(test_list)
{
        struct iomem_region *regions[9];
        struct list_count c;
        char name[32];

        for (int i = 0; i < 8; i++) {
                snprintf(name, sizeof(name), i < 5 ? "it.list.%d" : "other.%d", i);
                regions[i] = it_create(name, 4096, 0, backends[_i]);
        }
        regions[8] = it_create(NULL, 4096, 0, backends[_i]);
        ck_assert_uint_eq(iomem_region_flags(regions[8]) & IOMEM_REGION_ANONYMOUS, IOMEM_REGION_ANONYMOUS);

        c = (struct list_count){ .prefix = "it.list." };
        ck_assert_int_eq(iomem_list(client_, NULL, count_cb, &c), 0);
        ck_assert_uint_eq(c.n, 8);
        ck_assert_uint_eq(c.with_prefix, 5);
        c = (struct list_count){ .prefix = "it.list." };
        ck_assert_int_eq(iomem_list(client_, "it.list.", count_cb, &c), 0);
        ck_assert_uint_eq(c.n, 5);
        ck_assert_uint_eq(c.with_prefix, 5);
        c = (struct list_count){ .stop_after = 3 };
        ck_assert_int_eq(iomem_list(client_, "", count_cb, &c), 42);
        ck_assert_uint_eq(c.n, 3);
        c = (struct list_count){ 0 };
        ck_assert_int_eq(iomem_list(client_, "nothing-here", count_cb, &c), 0);
        ck_assert_uint_eq(c.n, 0);
        ck_assert_int_eq(iomem_list(client_, "bad prefix", count_cb, &c), -EINVAL);
        for (int i = 0; i < 9; i++)
                iomem_region_free(regions[i]);
}
END_TEST

START_TEST(test_ping_status)
{
        struct iomem_region *region = it_create("it.st", 65536, 0, backends[_i]);
        struct iomem_client *other = it_connect();
        struct iomem_status st;

        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(iomem_ping(other), 0);
        ck_assert_int_eq(iomem_status(other, &st), 0);
        ck_assert_uint_eq(st.regions, 1);
        ck_assert_uint_ge(st.bytes, 65536);
        ck_assert_uint_ge(st.connections, 2);
        ck_assert_uint_gt(strlen(st.server_version), 0);
        ck_assert_uint_gt(iomem_client_fd(other), 2);
        iomem_region_free(region);
        iomem_disconnect(other);
}
END_TEST

struct metrics_seen {
        unsigned samples, stop_after;
        uint64_t regions, opens, open_errors, enoent;
        bool regions_seen, unnamed;
};

static int metrics_cb(const struct iomem_metric *m, void *userdata)
{
        struct metrics_seen *s = userdata;

        s->samples++;
        if (!m->name) {
                s->unnamed = true;
                return 0;
        }
        ck_assert_ptr_nonnull(m->help);
        ck_assert(m->type == IOMEM_METRIC_GAUGE || m->type == IOMEM_METRIC_COUNTER);
        ck_assert((m->label_kind == IOMEM_METRIC_LABEL_NONE) == (m->label_name == NULL));
        ck_assert((m->label_kind == IOMEM_METRIC_LABEL_NONE) == (m->label_value[0] == '\0'));
        if (!strcmp(m->name, "iomemd_regions")) {
                s->regions = m->value;
                s->regions_seen = true;
        } else if (!strcmp(m->name, "iomemd_requests") && !strcmp(m->label_value, "OPEN")) {
                s->opens = m->value;
        } else if (!strcmp(m->name, "iomemd_request_errors") && !strcmp(m->label_value, "OPEN")) {
                s->open_errors = m->value;
        } else if (!strcmp(m->name, "iomemd_errors") && !strcmp(m->label_value, "ENOENT")) {
                ck_assert_uint_eq(m->label, ENOENT);
                s->enoent = m->value;
        }
        return s->stop_after && s->samples == s->stop_after ? 7 : 0;
}

/* iomem_metrics(): names, labels and values through the library; a callback's nonzero value stops the walk. */
START_TEST(test_metrics)
{
        struct iomem_region *a = it_create("it.m1", 4096, 0, IOMEM_BACKEND_MEMFD);
        struct iomem_region *b = it_create("it.m2", 4096, 0, IOMEM_BACKEND_MEMFD);
        struct iomem_region *o = NULL;
        struct metrics_seen s = { 0 };
        uint32_t flags = 0xFFFF;

        ck_assert_int_eq(iomem_open(client_, "it.m1", 0, 0, &o), 0);
        o = iomem_region_free(o);
        ck_assert_int_eq(iomem_open(client_, "it.none", 0, 0, &o), -ENOENT);
        ck_assert_int_eq(iomem_metrics(client_, &flags, metrics_cb, &s), 0);
        ck_assert_uint_eq(flags, 0);
        ck_assert(s.regions_seen && !s.unnamed);
        ck_assert_uint_eq(s.regions, 2);
        ck_assert_uint_eq(s.opens, 2);
        ck_assert_uint_eq(s.open_errors, 1);
        ck_assert_uint_eq(s.enoent, 1);
        ck_assert_uint_gt(s.samples, 20);
        s = (struct metrics_seen){ .stop_after = 3 };
        ck_assert_int_eq(iomem_metrics(client_, NULL, metrics_cb, &s), 7);
        ck_assert_uint_eq(s.samples, 3);
        ck_assert_int_eq(iomem_metrics(client_, NULL, NULL, NULL), -EINVAL);
        ck_assert_int_eq(iomem_metrics(NULL, NULL, metrics_cb, &s), -EINVAL);
        /* the connection is still in step: a plain request after the walk that stopped early */
        ck_assert_int_eq(iomem_ping(client_), 0);
        iomem_region_free(a);
        iomem_region_free(b);
}
END_TEST

/*
 * S4 across programs: this process keeps a mapping while a separately
 * exec'd iomemctl, which opens the region by name, writes; the bytes show up
 * in our mapping with no further request. Then the other way round.
 */
START_TEST(test_s4_with_cli)
{
        struct iomem_region *region = it_create("it.s4", 8192, 0, backends[_i]);
        char *p = it_map(region, 8192, PROT_READ | PROT_WRITE);
        const char *ctl = it_env("IOMEMCTL");
        char out[256], err[256];
        int status;

        const char *const wargv[] = { ctl, "--socket", daemon_.socket, "write", "it.s4", "--offset", "4100", NULL };
        status = it_run(wargv, "written by iomemctl", 19, out, sizeof(out), err, sizeof(err));
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "iomemctl write: %s", err);
        ck_assert_int_eq(memcmp(p + 4100, "written by iomemctl", 19), 0);

        memcpy(p + 10, "written by the test", 19);
        const char *const rargv[] = { ctl,  "--socket", daemon_.socket, "read", "it.s4", "--offset", "10",
                                      "--length", "19", NULL };
        status = it_run(rargv, NULL, 0, out, sizeof(out), err, sizeof(err));
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "iomemctl read: %s", err);
        ck_assert_str_eq(out, "written by the test");
        iomem_unmap(p, 8192);
        iomem_region_free(region);
}
END_TEST

/* A protocol-level timeout on the client does not hang; a closed daemon gives a clear error. */
START_TEST(test_daemon_gone)
{
        struct iomem_region *region = NULL;

        iomem_client_set_timeout(client_, 5000);
        ck_assert_int_eq(iomem_ping(client_), 0);
        kill(daemon_.pid, SIGKILL);
        waitpid(daemon_.pid, NULL, 0);
        daemon_.pid = 0;
        unlink(daemon_.socket);
        rmdir(daemon_.dir);
        ck_assert_int_lt(iomem_create(client_, "it.x", 4096, NULL, &region), 0);
        ck_assert_int_lt(iomem_ping(client_), 0);
        ck_assert_ptr_null(region);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &(struct iomem_client *){ NULL }), -ENOENT);
}
END_TEST

/* iomem_client_set_interrupt_cb(): SIGUSR1 sent to the calling thread until @stop; @calls counts the callback */
static volatile sig_atomic_t usr1_seen;
static void usr1_handler(int sig)
{
        (void)sig;
        usr1_seen = 1;
}

struct interrupt_arg {
        int calls;
        bool give_up; /* the callback's answer once a SIGUSR1 came */
};

static int interrupt_cb(struct iomem_client *client, void *userdata)
{
        struct interrupt_arg *a = userdata;

        (void)client;
        a->calls++;
        return usr1_seen && a->give_up;
}

struct kicker {
        pthread_t target;
        atomic_bool stop;
        int daemon_pid; /* > 0: SIGCONT it after a few signals (the callback said to go on) */
};

static void *kicker_main(void *p)
{
        struct kicker *k = p;

        for (unsigned i = 0; !atomic_load(&k->stop); i++) {
                pthread_kill(k->target, SIGUSR1); /* again and again: one sent before poll() ends nothing */
                it_sleep_ms(20);
                if (k->daemon_pid > 0 && i == 10)
                        kill(k->daemon_pid, SIGCONT);
        }
        return NULL;
}

/*
 * A blocking call whose wait a signal interrupts gives up when the interrupt callback says so (-EINTR), against
 * a daemon that does not answer (stopped) and without a timeout: the reply still to come (a CREATE's, with an fd)
 * is dropped when it arrives, never taken for the answer to a later request, and the connection stays usable.
 * A callback that says to go on leaves the call to its reply. SA_RESTART does not keep the wait from ending.
 */
START_TEST(test_interrupt_cb)
{
        struct sigaction sa = { .sa_handler = usr1_handler, .sa_flags = SA_RESTART }, old;
        struct interrupt_arg a = { .give_up = true };
        struct kicker k = { .target = pthread_self() };
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        pthread_t t;
        int fds;

        ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
        iomem_client_set_interrupt_cb(client_, interrupt_cb, &a);
        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(a.calls, 0);
        fds = fdutil_count(0);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, kicker_main, &k), 0);
        ck_assert_int_eq(iomem_create(client_, "it.intr", 4096, NULL, &region), -EINTR);
        atomic_store(&k.stop, true);
        pthread_join(t, NULL);
        ck_assert_ptr_null(region);
        ck_assert_int_ge(a.calls, 1);
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        /* the CREATE was sent: the daemon applies it; its reply comes before STAT's and is dropped */
        ck_assert_int_eq(iomem_stat(client_, "it.intr", &st), 0);
        ck_assert_uint_eq(st.size, 4096);
        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(fdutil_count(0), fds); /* the dropped reply's fd was closed */

        /* the callback says to go on: the call gets its reply */
        a = (struct interrupt_arg){ .give_up = false };
        usr1_seen = 0;
        k = (struct kicker){ .target = pthread_self(), .daemon_pid = daemon_.pid };
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, kicker_main, &k), 0);
        ck_assert_int_eq(iomem_stat(client_, "it.intr", &st), 0);
        atomic_store(&k.stop, true);
        pthread_join(t, NULL);
        kill(daemon_.pid, SIGCONT);
        ck_assert_uint_eq(st.size, 4096);
        ck_assert_int_eq(iomem_delete(client_, "it.intr"), 0);
        iomem_client_set_interrupt_cb(client_, NULL, NULL);
        ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
}
END_TEST

/*
 * An interrupted WATCH leaves no watch behind: the daemon made it (its reply comes after the call gave up), and
 * libiomem UNWATCHes it when that reply arrives, so it is not counted against the uid's watch quota (2 here) and
 * sends nothing. Before, it stayed until the connection ended: the second WATCH below failed with -EDQUOT.
 */
START_TEST(test_interrupt_watch)
{
        const char *const extra[] = { "--quota-watches", "2", NULL };
        struct sigaction sa = { .sa_handler = usr1_handler, .sa_flags = SA_RESTART }, old;
        struct interrupt_arg a = { .give_up = true };
        struct kicker k = { .target = pthread_self() };
        struct iomem_client *other;
        struct iomem_region *region;
        struct iomem_event ev;
        uint32_t w1 = 0, w2 = 0, w3 = 0;
        pthread_t t;

        /* a daemon of its own, with a watch quota */
        client_ = iomem_disconnect(client_);
        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        client_ = it_client_connect_flags(&daemon_, IOMEM_CONNECT_EVENTS);
        other = it_connect();
        usr1_seen = 0;
        ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
        ck_assert_int_eq(iomem_watch(client_, "it.a.", &w1), 0);
        iomem_client_set_interrupt_cb(client_, interrupt_cb, &a);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, kicker_main, &k), 0);
        ck_assert_int_eq(iomem_watch(client_, "", &w2), -EINTR); /* every name: its events would be many */
        atomic_store(&k.stop, true);
        pthread_join(t, NULL);
        ck_assert_uint_eq(w2, 0);
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        /* the WATCH's reply comes before PING's: the UNWATCH goes out then, ahead of the next WATCH */
        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(iomem_watch(client_, "it.b.", &w3), 0);
        ck_assert_uint_ne(w3, w1);
        /* no event of the stray watch (it.c matches only it), and the caller's watches still work */
        ck_assert_int_eq(iomem_create(other, "it.c", 4096, NULL, &region), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_create(other, "it.b.x", 4096, NULL, &region), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_next_event(client_, &ev, 10000), 0);
        ck_assert_uint_eq(ev.kind, IOMEM_EVENT_CREATED);
        ck_assert_uint_eq(ev.watch_id, w3);
        ck_assert_str_eq(ev.name, "it.b.x");
        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(iomem_next_event(client_, &ev, 0), -EAGAIN);
        iomem_client_set_interrupt_cb(client_, NULL, NULL);
        ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
        iomem_disconnect(other);
}
END_TEST

/* Bytes this client's socket holds unread by the daemon (its send buffer's use), and the buffer's size. */
static bool send_buffer_full(int fd)
{
        int queued = 0, size = 0;
        socklen_t len = sizeof(size);

        ck_assert_int_eq(ioctl(fd, SIOCOUTQ, &queued), 0);
        ck_assert_int_eq(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &len), 0);
        return queued >= size;
}

/*
 * A send that waits for room in a full socket buffer (the daemon stopped after many interrupted calls) ends too
 * when the interrupt callback says so, while the daemon is still stopped: nothing of the request went (the
 * buffer was full), so nothing is sent (the CREATE is never applied), and after SIGCONT the connection answers
 * right. Before, the send waited for room whatever the signals: here until the timeout (-ETIMEDOUT, the
 * connection broken).
 */
START_TEST(test_interrupt_send)
{
        struct sigaction sa = { .sa_handler = usr1_handler, .sa_flags = SA_RESTART }, old;
        struct interrupt_arg a = { .give_up = true };
        struct kicker k = { .target = pthread_self() };
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        int fd, one = 1, fds;
        unsigned sent = 0;
        pthread_t t;

        usr1_seen = 0;
        ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
        ck_assert_int_eq(iomem_ping(client_), 0);
        fds = fdutil_count(0);
        fd = iomem_client_fd(client_);
        ck_assert_int_ge(fd, 0);
        /* the smallest send buffer the kernel allows: a few requests fill it */
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
        iomem_client_set_timeout(client_, 30000); /* a bound for the old behaviour, not a timed assertion */
        iomem_client_set_interrupt_cb(client_, interrupt_cb, &a);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, kicker_main, &k), 0);
        /* requests the daemon does not read, each call interrupted in its wait for the reply, until the buffer is full */
        while (!send_buffer_full(fd)) {
                ck_assert_int_eq(iomem_ping(client_), -EINTR);
                ck_assert_uint_lt(++sent, 100000);
        }
        /* this one waits for room to send: the signal ends it, and it takes back its request, unsent */
        ck_assert_int_eq(iomem_create(client_, "it.sendintr", 4096, NULL, &region), -EINTR);
        ck_assert_ptr_null(region);
        ck_assert(send_buffer_full(fd));
        atomic_store(&k.stop, true);
        pthread_join(t, NULL);
        ck_assert_int_eq(kill(daemon_.pid, SIGCONT), 0);
        /* the PINGs' replies come first and are dropped; then each call gets its own */
        ck_assert_int_eq(iomem_ping(client_), 0);
        ck_assert_int_eq(iomem_stat(client_, "it.sendintr", &st), -ENOENT);
        ck_assert_int_eq(iomem_create(client_, "it.sendintr", 4096, NULL, &region), 0);
        ck_assert_int_eq(iomem_stat(client_, "it.sendintr", &st), 0);
        ck_assert_uint_eq(st.size, 4096);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_delete(client_, "it.sendintr"), 0);
        ck_assert_int_eq(fdutil_count(0), fds);
        fprintf(stderr, "test_interrupt_send: %u PINGs filled the send buffer\n", sent);
        iomem_client_set_interrupt_cb(client_, NULL, NULL);
        ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
}
END_TEST

/* test_interrupt_send_helped: the callback, in the send's wait, lets the daemon go and has another thread make a call */
struct helper_arg {
        int daemon_pid;
        int calls;
        int ping; /* the other thread's iomem_ping() */
};

static void *helper_ping(void *p)
{
        struct helper_arg *h = p;

        h->ping = iomem_ping(client_);
        return NULL;
}

static int helper_cb(struct iomem_client *client, void *userdata)
{
        struct helper_arg *h = userdata;
        pthread_t t;

        (void)client;
        if (h->calls++ == 0) {
                /* the other thread's call flushes this one's request behind the dropped PINGs and reads its reply */
                kill(h->daemon_pid, SIGCONT);
                if (pthread_create(&t, NULL, helper_ping, h) == 0)
                        pthread_join(t, NULL);
        }
        return 0; /* go on */
}

/*
 * A send waiting for room whose callback says to go on, while another thread (meanwhile: the callback runs
 * without the lock) sends the request for it and reads its reply: the call returns that reply, as it would in
 * its wait for the reply. Before, a request found complete after the callback was taken as given up: -EINTR with
 * the CREATE applied and its region dropped, although the callback never said to stop.
 */
START_TEST(test_interrupt_send_helped)
{
        struct sigaction sa = { .sa_handler = usr1_handler, .sa_flags = SA_RESTART }, old;
        struct interrupt_arg a = { .give_up = true };
        struct helper_arg h = { .daemon_pid = daemon_.pid, .ping = 1 };
        struct kicker k = { .target = pthread_self() };
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        int fd, one = 1;
        unsigned sent = 0;
        pthread_t t;

        usr1_seen = 0;
        ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
        ck_assert_int_eq(iomem_ping(client_), 0);
        fd = iomem_client_fd(client_);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
        iomem_client_set_timeout(client_, 30000); /* a bound for a hang, not a timed assertion */
        iomem_client_set_interrupt_cb(client_, interrupt_cb, &a);
        ck_assert_int_eq(kill(daemon_.pid, SIGSTOP), 0);
        ck_assert_int_eq(pthread_create(&t, NULL, kicker_main, &k), 0);
        while (!send_buffer_full(fd)) {
                ck_assert_int_eq(iomem_ping(client_), -EINTR);
                ck_assert_uint_lt(++sent, 100000);
        }
        iomem_client_set_interrupt_cb(client_, helper_cb, &h);
        ck_assert_int_eq(iomem_create(client_, "it.sendhelp", 4096, NULL, &region), 0);
        atomic_store(&k.stop, true);
        pthread_join(t, NULL);
        ck_assert_int_ge(h.calls, 1);
        ck_assert_int_eq(h.ping, 0);
        ck_assert_ptr_nonnull(region);
        iomem_client_set_interrupt_cb(client_, NULL, NULL);
        ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
        ck_assert_int_eq(iomem_stat(client_, "it.sendhelp", &st), 0);
        region = iomem_region_free(region);
        ck_assert_int_eq(iomem_delete(client_, "it.sendhelp"), 0);
}
END_TEST

/*
 * RESERVE: the reply says the memory is there, the owner's byte quota is
 * charged the whole size, the quota refuses a reservation that would pass
 * it before anything is allocated, and a RESERVEd region grows reserved.
 * A connection that never asked for the page bits never sees them (a
 * version-1 client would take them for a malformed reply).
 */
START_TEST(test_reserve_quota)
{
        const enum iomem_backend b = backends[_i];
        struct iomem_region *region, *other_region = NULL;
        struct iomem_client *other;
        struct iomem_quota q;
        char *p;

        region = it_create("it.reserved", 4 * 1024 * 1024, IOMEM_CREATE_RESERVE | IOMEM_CREATE_RESIZABLE, b);
        ck_assert_uint_eq(iomem_region_flags(region) & (IOMEM_REGION_RESERVED | IOMEM_REGION_HUGETLB),
                          IOMEM_REGION_RESERVED);
        ck_assert_int_eq(iomem_quota(client_, &q), 0);
        ck_assert_uint_eq(q.bytes, 4 * 1024 * 1024);
        p = it_map(region, 4 * 1024 * 1024, PROT_READ | PROT_WRITE);
        memset(p, 0x5a, 4 * 1024 * 1024);
        ck_assert_int_eq(iomem_unmap(p, 4 * 1024 * 1024), 0);
        /* growing keeps it reserved: the new bytes are allocated by the resize */
        ck_assert_int_eq(iomem_resize(client_, "it.reserved", 8 * 1024 * 1024), 0);
        ck_assert_int_eq(iomem_quota(client_, &q), 0);
        ck_assert_uint_eq(q.bytes, 8 * 1024 * 1024);
        region = iomem_region_free(region);

        other = it_connect();
        ck_assert_int_eq(iomem_open(other, "it.reserved", 0, 0, &other_region), 0);
        ck_assert_uint_eq(iomem_region_flags(other_region) & (IOMEM_REGION_HUGETLB | IOMEM_REGION_THP |
                                                              IOMEM_REGION_RESERVED), 0);
        other_region = iomem_region_free(other_region);
        iomem_disconnect(other);
        /* the creator's connection asked for page bits: its OPEN replies carry them */
        ck_assert_int_eq(iomem_open(client_, "it.reserved", 0, 0, &other_region), 0);
        ck_assert(iomem_region_flags(other_region) & IOMEM_REGION_RESERVED);
        other_region = iomem_region_free(other_region);
}
END_TEST

START_TEST(test_reserve_over_quota)
{
        const char *const extra[] = { "--quota-bytes", "1M", NULL };
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESERVE };
        struct iomem_region *region = NULL;
        struct iomem_quota q;

        /* a daemon of its own, with a byte quota */
        client_ = iomem_disconnect(client_);
        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        client_ = it_connect();
        ck_assert_int_eq(iomem_create(client_, "it.big", 2 * 1024 * 1024, &o, &region), -EDQUOT);
        ck_assert_ptr_null(region);
        ck_assert_int_eq(iomem_quota(client_, &q), 0);
        ck_assert_uint_eq(q.bytes, 0);
        ck_assert_int_eq(iomem_create(client_, "it.small", 1024 * 1024, &o, &region), 0);
        ck_assert(iomem_region_flags(region) & IOMEM_REGION_RESERVED);
        region = iomem_region_free(region);
}
END_TEST

/* HUGE: hugetlb pages when the pool has them (grown here where allowed, then put back), else the fallback. */
START_TEST(test_huge)
{
        struct iomem_region *region, *other_region = NULL;
        struct iomem_client *other;
        FILE *f;
        long total = -1;
        char *p;

        /* no hugetlb page of the size: the fallback, which the flags describe */
        region = it_create("it.huge3", 3 * 1024 * 1024, IOMEM_CREATE_HUGE, IOMEM_BACKEND_AUTO);
        ck_assert_uint_eq(iomem_region_flags(region) & IOMEM_REGION_HUGETLB, 0);
        region = iomem_region_free(region);

        f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "re");
        if (f) {
                if (fscanf(f, "%ld", &total) != 1)
                        total = -1;
                fclose(f);
        }
        f = total >= 0 ? fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "we") : NULL;
        if (!f) {
                fprintf(stderr, "test_huge: cannot grow the hugetlb pool here, hugetlb part skipped\n");
                return;
        }
        fprintf(f, "%ld\n", total + 2);
        fclose(f);
        region = NULL;
        if (iomem_create(client_, "it.huge", 4 * 1024 * 1024,
                         &(struct iomem_create_opts){ .flags = IOMEM_CREATE_HUGE | IOMEM_CREATE_HUGE_2MB },
                         &region) == 0 &&
            (iomem_region_flags(region) & IOMEM_REGION_HUGETLB)) {
                ck_assert(iomem_region_flags(region) & IOMEM_REGION_RESERVED);
                p = it_map(region, 4 * 1024 * 1024, PROT_READ | PROT_WRITE);
                strcpy(p + 3 * 1024 * 1024, "huge");
                ck_assert_int_eq(iomem_unmap(p, 4 * 1024 * 1024), 0);
                other = it_connect();
                ck_assert_int_eq(iomem_open(other, "it.huge", IOMEM_OPEN_RDONLY, 0, &other_region), 0);
                p = it_map(other_region, 4 * 1024 * 1024, PROT_READ);
                ck_assert_str_eq(p + 3 * 1024 * 1024, "huge");
                ck_assert_int_eq(iomem_unmap(p, 4 * 1024 * 1024), 0);
                other_region = iomem_region_free(other_region);
                iomem_disconnect(other);
        } else {
                fprintf(stderr, "test_huge: the kernel found no memory for 2 hugetlb pages, skipped\n");
        }
        region = iomem_region_free(region);
        (void)iomem_delete(client_, "it.huge"); /* -ENOENT if it was not made */
        client_ = iomem_disconnect(client_);
        it_daemon_stop(&daemon_); /* the daemon's copy goes: the pages can leave the pool */
        f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "we");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "%ld\n", total);
        ck_assert_int_eq(fclose(f), 0);
        client_ = NULL;
        it_daemon_start(&daemon_, NULL); /* for teardown */
        client_ = it_connect();
}
END_TEST

/* Return: the bytes of memory @region's object has allocated now (st_blocks, in 512-byte units). */
static uint64_t it_allocated(const struct iomem_region *region)
{
        struct stat st;

        ck_assert_int_eq(fstat(iomem_region_fd(region), &st), 0);
        return (uint64_t)st.st_blocks * 512u;
}

/*
 * Hostile review after the async client: an anonymous region is checked
 * against the byte quota "as if held", then nothing stays charged (the
 * daemon keeps nothing of it). With RESERVE, or HUGE with hugetlb pages in
 * the pool, the daemon itself allocated the memory (fallocate, pool pages
 * taken at creation), charged to its own memory cgroup or to the system's
 * hugetlb pool, for as long as the client holds the fd: 32 anonymous
 * RESERVEs of 1 MiB under a 1 MiB quota made the daemon allocate 32 MiB,
 * and so on without bound. Whatever the daemon allocates for a uid must stay
 * within its byte quota.
 */
START_TEST(test_anonymous_pages_bounded)
{
        const char *const extra[] = { "--quota-bytes", "2M", NULL };
        struct iomem_create_opts reserve = { .flags = IOMEM_CREATE_RESERVE };
        struct iomem_create_opts huge = { .flags = IOMEM_CREATE_HUGE | IOMEM_CREATE_HUGE_2MB };
        struct iomem_region *regions[32] = { NULL };
        uint64_t allocated = 0;
        long pool = it_hugepages();
        bool grown = false;
        int r;

        client_ = iomem_disconnect(client_);
        it_daemon_stop(&daemon_);
        it_daemon_start(&daemon_, extra);
        client_ = it_connect();
        for (unsigned i = 0; i < 32; i++) {
                r = iomem_create(client_, NULL, 1024 * 1024, &reserve, &regions[i]);
                ck_assert_msg(r == 0 || r == -EINVAL, "anonymous RESERVE: %s", iomem_strerror(r));
                if (r == 0)
                        allocated += it_allocated(regions[i]);
        }
        fprintf(stderr, "test_anonymous_pages_bounded: 32 anonymous RESERVEs of 1 MiB allocated %llu bytes\n",
                (unsigned long long)allocated);
        ck_assert_uint_le(allocated, 2 * 1024 * 1024);
        for (unsigned i = 0; i < 32; i++)
                regions[i] = iomem_region_free(regions[i]);

        /* hugetlb pages taken from the pool for anonymous regions: only where the pool can be grown here */
        if (pool >= 0 && it_set_hugepages(pool + 8) && it_hugepages() >= pool + 8) {
                grown = true;
                allocated = 0;
                for (unsigned i = 0; i < 8; i++) {
                        r = iomem_create(client_, NULL, 2 * 1024 * 1024, &huge, &regions[i]);
                        ck_assert_msg(r == 0, "anonymous HUGE: %s", iomem_strerror(r));
                        allocated += it_allocated(regions[i]);
                }
                fprintf(stderr, "test_anonymous_pages_bounded: 8 anonymous HUGE of 2 MiB allocated %llu bytes\n",
                        (unsigned long long)allocated);
                for (unsigned i = 0; i < 8; i++)
                        regions[i] = iomem_region_free(regions[i]);
        } else {
                fprintf(stderr, "test_anonymous_pages_bounded: cannot grow the hugetlb pool here, hugetlb part "
                                "skipped\n");
        }
        if (grown) {
                client_ = iomem_disconnect(client_);
                it_daemon_stop(&daemon_); /* its copies go: the pages can leave the pool */
                ck_assert(it_set_hugepages(pool));
                it_daemon_start(&daemon_, NULL); /* for teardown */
                client_ = it_connect();
                ck_assert_uint_le(allocated, 2 * 1024 * 1024);
        }
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("integration-api");
        TCase *tc = tcase_create("api");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_loop_test(tc, test_create_open_delete, 0, 3);
        tcase_add_loop_test(tc, test_create_existing, 0, 3);
        tcase_add_test(tc, test_regions_outlive_client);
        tcase_add_test(tc, test_first_region_race);
        tcase_add_test(tc, test_error_message_lifetime);
        tcase_add_test(tc, test_error_message_not_stale);
        tcase_add_test(tc, test_error_message_not_stale_args);
        tcase_add_loop_test(tc, test_errors, 0, 3);
        tcase_add_loop_test(tc, test_seal, 0, 3);
        tcase_add_test(tc, test_seal_write_busy);
        tcase_add_loop_test(tc, test_read_only, 0, 3);
        tcase_add_loop_test(tc, test_resize, 0, 3);
        tcase_add_loop_test(tc, test_list, 0, 3);
        tcase_add_loop_test(tc, test_ping_status, 0, 3);
        tcase_add_loop_test(tc, test_s4_with_cli, 0, 3);
        tcase_add_test(tc, test_daemon_gone);
        tcase_add_test(tc, test_interrupt_cb);
        tcase_add_test(tc, test_interrupt_watch);
        tcase_add_test(tc, test_interrupt_send);
        tcase_add_test(tc, test_interrupt_send_helped);
        tcase_add_test(tc, test_metrics);
        tcase_add_loop_test(tc, test_reserve_quota, 0, 3);
        tcase_add_test(tc, test_reserve_over_quota);
        tcase_add_test(tc, test_huge);
        tcase_add_test(tc, test_recycle);
        tcase_add_test(tc, test_create_refusal_says_why);
        tcase_add_test(tc, test_refusal_says_why);
        tcase_add_test(tc, test_anonymous_pages_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(suite());
}
