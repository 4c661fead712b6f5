/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-reliability-daemon: checklist items that need the real iomemd: D6 at its fd limit, D9, L1 kill -9, L5 restart under load. */
#include <dirent.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "iomem.h"
#include "itutil.h"
#include "proto.h"
#include "transport.h"

#define RAW_TIMEOUT_MS 10000

/* ---- a raw protocol client (hostile parts need control of every byte and fd) ---- */

struct raw {
        int fd;
        struct transport t;
        uint32_t next_id;
};

static int raw_connect(const char *path, struct raw *c)
{
        memset(c, 0, sizeof(*c));
        c->next_id = 1;
        c->fd = fdutil_connect(path);
        if (c->fd < 0)
                return c->fd;
        ck_assert_int_eq(transport_init(&c->t, c->fd, 0, 0), 0);
        return 0;
}

static void raw_close(struct raw *c)
{
        transport_deinit(&c->t);
        close(c->fd);
}

/* Send a request. Return: as transport_send_blocking(). */
static int raw_send(struct raw *c, uint16_t opcode, const uint8_t *payload, int len, int *fds, unsigned nfds)
{
        struct proto_header h = { .opcode = opcode, .id = c->next_id++ };

        ck_assert_int_ge(len, 0);
        return transport_send_blocking(&c->t, &h, payload, (size_t)len, fds, nfds, RAW_TIMEOUT_MS);
}

/*
 * A request and its reply. Return: 1 success (*f kept if f), 0 error reply
 * (*errp), negative errno if the connection failed. A reply that does not
 * match the request fails the test: whatever happens, the daemon never
 * answers with garbage.
 */
static int raw_call(struct raw *c, uint16_t opcode, const uint8_t *payload, int len, int *errp,
                    struct transport_frame *f)
{
        struct transport_frame reply;
        uint32_t id = c->next_id;
        int r;

        r = raw_send(c, opcode, payload, len, NULL, 0);
        if (r < 0)
                return r;
        r = transport_recv_blocking(&c->t, &reply, RAW_TIMEOUT_MS);
        ck_assert_int_ne(r, -ETIMEDOUT); /* never a hang */
        if (r < 0)
                return r;
        ck_assert_msg(reply.hdr.id == id && reply.hdr.opcode == opcode && (reply.hdr.flags & PROTO_FLAG_REPLY),
                      "reply does not match its request");
        if (reply.hdr.flags & PROTO_FLAG_ERROR) {
                struct proto_error e;

                ck_assert_int_eq(proto_error_decode(reply.payload, reply.hdr.length, &e), 0);
                ck_assert_int_lt(e.error, 0);
                *errp = e.error;
                transport_frame_deinit(&reply);
                return 0;
        }
        if (f)
                *f = reply;
        else
                transport_frame_deinit(&reply);
        return 1;
}

static int raw_hello(struct raw *c)
{
        uint8_t buf[16];
        int e;

        return raw_call(c, PROTO_OP_HELLO, buf, proto_hello_encode(&(struct proto_hello){ 1, 1, 0 }, buf, sizeof(buf)),
                        &e, NULL);
}

/* Return: true once the daemon closed @c (reads until EOF or reset). */
static bool raw_closed_by_peer(struct raw *c)
{
        struct transport_frame f;
        int r;

        while ((r = transport_recv_blocking(&c->t, &f, RAW_TIMEOUT_MS)) == 1)
                transport_frame_deinit(&f);
        return r != -ETIMEDOUT;
}

static struct it_daemon daemon_;

static void setup(void)
{
        test_fd_setup();
}

static void teardown(void)
{
        it_daemon_stop(&daemon_);
        test_fd_teardown();
}

/*
 * D6: the daemon at its fd limit receives fds: the kernel cuts them off
 * (MSG_CTRUNC). That connection is dropped after closing whatever arrived;
 * the daemon stays up, serves others and ends with the fds it had.
 */
START_TEST(test_d6_ctrunc_at_fd_limit)
{
        struct rlimit old, low;
        struct raw c, other;
        int fds[PROTO_MAX_FDS], base, r;
        uint8_t buf[16];

        it_daemon_start(&daemon_, NULL);
        base = it_daemon_settled_fds(&daemon_);
        ck_assert_int_eq(raw_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(raw_hello(&c), 1);
        ck_assert_int_eq(raw_connect(daemon_.socket, &other), 0);
        ck_assert_int_eq(raw_hello(&other), 1);

        /* room for exactly one more fd in the daemon */
        ck_assert_int_eq(prlimit(daemon_.pid, RLIMIT_NOFILE, NULL, &old), 0);
        low = old;
        low.rlim_cur = (rlim_t)fdutil_count(daemon_.pid) + 1;
        ck_assert_int_eq(prlimit(daemon_.pid, RLIMIT_NOFILE, &low, NULL), 0);

        for (int i = 0; i < PROTO_MAX_FDS; i++)
                fds[i] = memfd_create("d6", MFD_CLOEXEC);
        r = raw_send(&c, PROTO_OP_PING, buf, proto_ping_encode(&(struct proto_ping){ 6 }, buf, sizeof(buf)), fds,
                     PROTO_MAX_FDS); /* consumed */
        ck_assert_int_eq(r, 0);
        ck_assert_msg(raw_closed_by_peer(&c), "D6: the daemon kept a connection whose fds were cut off");
        raw_close(&c);

        ck_assert_int_eq(prlimit(daemon_.pid, RLIMIT_NOFILE, &old, NULL), 0);
        /* the other client was not disturbed */
        ck_assert_int_eq(raw_call(&other, PROTO_OP_PING, buf,
                                  proto_ping_encode(&(struct proto_ping){ 7 }, buf, sizeof(buf)), &r, NULL),
                         1);
        raw_close(&other);
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
}
END_TEST

/* Return: true if the daemon's fd @fd is one it inherited from this test (same number, same object, no CLOEXEC here). */
static bool inherited(pid_t pid, int fd)
{
        char theirs[64], ours[64], a[256] = "", b[256] = "";
        ssize_t n;

        snprintf(theirs, sizeof(theirs), "/proc/%d/fd/%d", (int)pid, fd);
        snprintf(ours, sizeof(ours), "/proc/self/fd/%d", fd);
        if ((n = readlink(theirs, a, sizeof(a) - 1)) < 0)
                return false;
        a[n] = 0;
        if ((n = readlink(ours, b, sizeof(b) - 1)) < 0)
                return false;
        b[n] = 0;
        return strcmp(a, b) == 0 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/*
 * D9: after 10,000 malformed sessions, a process the daemon's fd table is
 * inherited by (an fd keeper is forked without exec; anything it spawned
 * would inherit the same) holds none of the fds those sessions passed in.
 * Checked on the daemon itself: it holds exactly the fds it held before,
 * and every one of them is close-on-exec.
 */
START_TEST(test_d9_many_malformed_sessions)
{
        char path[64], link[320];
        struct dirent *e;
        DIR *dir;
        int base, nonexec = 0;

        it_daemon_start(&daemon_, NULL);
        base = it_daemon_settled_fds(&daemon_);
        for (int i = 0; i < 10000; i++) {
                struct raw c;
                uint8_t frame[PROTO_HEADER_SIZE + 8];
                struct proto_header h = { .magic = PROTO_MAGIC, .version = PROTO_VERSION, .opcode = PROTO_OP_PING,
                                          .length = 8, .nfds = (uint16_t)(i % 3) };
                int fd = memfd_create("d9", MFD_CLOEXEC), kind = i % 4;

                ck_assert_int_eq(raw_connect(daemon_.socket, &c), 0);
                if (kind == 0)
                        h.length = 0xFFFFFFFFu; /* F2 */
                else if (kind == 1)
                        h.magic = 0; /* garbage */
                proto_header_encode(&h, frame);
                memset(frame + PROTO_HEADER_SIZE, 0, 8);
                (void)fdutil_sendmsg(c.fd, frame, sizeof(frame), &fd, 1, 1, MSG_NOSIGNAL);
                close(fd);
                raw_close(&c);
        }
        ck_assert_int_eq(it_daemon_settled_fds(&daemon_), base);
        snprintf(path, sizeof(path), "/proc/%d/fdinfo", (int)daemon_.pid);
        dir = opendir(path);
        ck_assert_ptr_nonnull(dir);
        while ((e = readdir(dir))) {
                char info[256];
                unsigned flags = 0;
                FILE *f;

                if (e->d_name[0] == '.')
                        continue;
                snprintf(link, sizeof(link), "%s/%s", path, e->d_name);
                f = fopen(link, "re");
                if (!f)
                        continue;
                while (fgets(info, sizeof(info), f))
                        if (sscanf(info, "flags: %o", &flags) == 1)
                                break;
                fclose(f);
                if (!(flags & O_CLOEXEC) && !inherited(daemon_.pid, atoi(e->d_name))) {
                        fprintf(stderr, "D9: daemon fd %s has no close-on-exec\n", e->d_name);
                        nonexec++;
                }
        }
        closedir(dir);
        ck_assert_msg(nonexec == 0, "D9: the daemon holds %d fds without close-on-exec", nonexec);
}
END_TEST

/*
 * L1: SIGKILL the daemon in the middle of pipelined requests: the client's
 * mapping and the fds it already received keep working with their bytes,
 * and its pending requests end with a clear error, not a hang.
 */
START_TEST(test_l1_kill_mid_request)
{
        struct iomem_client *client = NULL;
        struct iomem_region *region = NULL;
        struct raw c;
        uint8_t buf[512], *map;
        struct transport_frame f;
        int r, got = 0, fds[8], nfds = 0;

        it_daemon_start(&daemon_, NULL);
        ck_assert_int_eq(iomem_connect(daemon_.socket, &client), 0);
        ck_assert_int_eq(iomem_create(client, "l1", 65536, NULL, &region), 0);
        ck_assert_int_eq(iomem_region_map(region, 0, 65536, PROT_READ | PROT_WRITE, (void **)&map), 0);
        memset(map, 0x5a, 65536);

        ck_assert_int_eq(raw_connect(daemon_.socket, &c), 0);
        ck_assert_int_eq(raw_hello(&c), 1);
        for (int i = 0; i < 200; i++) {
                int len = proto_open_encode(&(struct proto_open){ .flags = PROTO_OPEN_RDONLY, .name = "l1" }, buf,
                                            sizeof(buf));

                ck_assert_int_eq(raw_send(&c, PROTO_OP_OPEN, buf, len, NULL, 0), 0);
        }
        /* take a few replies, keep their fds, then kill the daemon with the rest in flight */
        while (got < 8 && (r = transport_recv_blocking(&c.t, &f, RAW_TIMEOUT_MS)) == 1) {
                ck_assert_uint_eq(f.nfds, 1);
                fds[nfds++] = f.fds[0];
                f.fds[0] = -1;
                f.nfds = 0;
                transport_frame_deinit(&f);
                got++;
        }
        ck_assert_int_eq(got, 8);
        ck_assert_int_eq(kill(daemon_.pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(daemon_.pid, NULL, 0), daemon_.pid);
        daemon_.pid = 0;

        /* the rest: replies already sent, then a clear end of stream */
        ck_assert_msg(raw_closed_by_peer(&c), "L1: pending requests hang after the daemon died");
        raw_close(&c);
        ck_assert_int_lt(iomem_ping(client), 0);

        /* the mapping and the received fds still work */
        for (int i = 0; i < 65536; i++)
                ck_assert_uint_eq(map[i], 0x5a);
        memset(map, 0xa5, 65536);
        for (int i = 0; i < nfds; i++) {
                uint8_t *ro = mmap(NULL, 65536, PROT_READ, MAP_SHARED, fds[i], 0);
                struct stat st;

                ck_assert_ptr_ne(ro, MAP_FAILED);
                ck_assert_int_eq(fstat(fds[i], &st), 0);
                ck_assert_int_ge(st.st_size, 65536);
                ck_assert_uint_eq(ro[0], 0xa5);
                ck_assert_uint_eq(ro[65535], 0xa5);
                munmap(ro, 65536);
                close(fds[i]);
        }
        iomem_unmap(map, 65536);
        iomem_region_free(region);
        iomem_disconnect(client);
        unlink(daemon_.socket);
        rmdir(daemon_.dir);
}
END_TEST

/* ---- L5 ------------------------------------------------------------------ */

#define L5_CLIENTS 8

static pthread_mutex_t l5_lock = PTHREAD_MUTEX_INITIALIZER;
static char l5_socket[108];
static volatile int l5_stop;
static unsigned long l5_replies, l5_conn_errors;

static void l5_path(char *out)
{
        pthread_mutex_lock(&l5_lock);
        memcpy(out, l5_socket, sizeof(l5_socket));
        pthread_mutex_unlock(&l5_lock);
}

/* CREATE, STAT, DELETE in a loop; a connection error means: reconnect (to the restarted daemon). */
static void *l5_client(void *arg)
{
        unsigned index = (unsigned)(uintptr_t)arg, k = 0;
        uint8_t buf[512];
        char path[108], name[64];
        struct raw c;
        bool up = false;
        int e, r;

        while (!l5_stop) {
                if (!up) {
                        l5_path(path);
                        if (raw_connect(path, &c) < 0) {
                                it_sleep_ms(5);
                                continue;
                        }
                        up = true;
                        if (raw_hello(&c) != 1)
                                goto reconnect;
                }
                snprintf(name, sizeof(name), "l5-%u-%u", index, k++);
                r = raw_call(&c, PROTO_OP_CREATE, buf,
                             proto_create_encode(&(struct proto_create){ .size = 4096, .name = name,
                                                                          .flags = PROTO_CREATE_EXCLUSIVE },
                                                 buf, sizeof(buf)),
                             &e, NULL);
                if (r < 0)
                        goto reconnect;
                ck_assert_msg(r == 1, "L5: CREATE %s: %s", name, strerror(-e));
                r = raw_call(&c, PROTO_OP_STAT, buf, proto_name_encode(&(struct proto_name){ name }, buf, sizeof(buf)),
                             &e, NULL);
                if (r < 0)
                        goto reconnect;
                ck_assert_msg(r == 1, "L5: STAT %s after its CREATE: %s", name, strerror(-e));
                if (k % 2) {
                        r = raw_call(&c, PROTO_OP_DELETE, buf,
                                     proto_name_encode(&(struct proto_name){ name }, buf, sizeof(buf)), &e, NULL);
                        if (r < 0)
                                goto reconnect;
                        ck_assert_msg(r == 1, "L5: DELETE %s: %s", name, strerror(-e));
                }
                __atomic_fetch_add(&l5_replies, 1, __ATOMIC_RELAXED);
                continue;
reconnect:
                __atomic_fetch_add(&l5_conn_errors, 1, __ATOMIC_RELAXED);
                raw_close(&c);
                up = false;
        }
        if (up)
                raw_close(&c);
        return NULL;
}

struct l5_walk {
        struct iomem_client *client;
        uint64_t count;
};

static int l5_list_cb(const struct iomem_list_entry *e, void *userdata)
{
        struct l5_walk *w = userdata;
        struct iomem_region *region = NULL;
        struct stat st;

        /* every region the new daemon lists is whole: it opens, with its full size */
        ck_assert_int_eq(iomem_open(w->client, e->name, IOMEM_OPEN_RDONLY, 0, &region), 0);
        ck_assert_int_eq(fstat(iomem_region_fd(region), &st), 0);
        ck_assert_int_ge(st.st_size, (off_t)e->size);
        iomem_region_free(region);
        w->count++;
        return 0;
}

/*
 * L5: the daemon is killed and restarted under load: every request gets a
 * matching reply or a connection error, clients reconnect and carry on,
 * and the restarted daemon's table is consistent (STATUS counts what LIST
 * shows, every listed region opens whole).
 */
START_TEST(test_l5_restart_under_load)
{
        pthread_t threads[L5_CLIENTS];
        struct iomem_client *client = NULL;
        struct iomem_status st;
        struct l5_walk walk = { 0 };
        unsigned long before;

        it_daemon_start(&daemon_, NULL);
        memcpy(l5_socket, daemon_.socket, sizeof(l5_socket));
        l5_stop = 0;
        for (uintptr_t i = 0; i < L5_CLIENTS; i++)
                ck_assert_int_eq(pthread_create(&threads[i], NULL, l5_client, (void *)i), 0);
        for (int round = 0; round < 3; round++) {
                struct it_daemon next;

                before = __atomic_load_n(&l5_replies, __ATOMIC_RELAXED);
                for (int i = 0; i < 1000 && __atomic_load_n(&l5_replies, __ATOMIC_RELAXED) < before + 200; i++)
                        it_sleep_ms(5);
                kill(daemon_.pid, SIGKILL);
                ck_assert_int_eq(waitpid(daemon_.pid, NULL, 0), daemon_.pid);
                daemon_.pid = 0;
                unlink(daemon_.socket);
                rmdir(daemon_.dir);
                it_daemon_start(&next, NULL);
                pthread_mutex_lock(&l5_lock);
                memcpy(l5_socket, next.socket, sizeof(l5_socket));
                pthread_mutex_unlock(&l5_lock);
                daemon_ = next;
        }
        before = __atomic_load_n(&l5_replies, __ATOMIC_RELAXED);
        for (int i = 0; i < 1000 && __atomic_load_n(&l5_replies, __ATOMIC_RELAXED) < before + 200; i++)
                it_sleep_ms(5);
        l5_stop = 1;
        for (int i = 0; i < L5_CLIENTS; i++)
                pthread_join(threads[i], NULL);
        fprintf(stderr, "L5: %lu requests answered, %lu connection errors over 3 restarts\n", l5_replies, l5_conn_errors);
        ck_assert_uint_gt(__atomic_load_n(&l5_replies, __ATOMIC_RELAXED), before); /* work resumed after restarts */
        ck_assert_uint_ge(l5_conn_errors, 1);

        ck_assert_int_eq(iomem_connect(daemon_.socket, &client), 0);
        walk.client = client;
        ck_assert_int_eq(iomem_list(client, "", l5_list_cb, &walk), 0);
        ck_assert_int_eq(iomem_status(client, &st), 0);
        ck_assert_uint_eq(st.regions, walk.count);
        ck_assert_uint_gt(walk.count, 0);
        iomem_disconnect(client);
}
END_TEST

static Suite *suite(void)
{
        Suite *s = suite_create("reliability-daemon");
        TCase *tc = tcase_create("daemon");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_d6_ctrunc_at_fd_limit);
        tcase_add_test(tc, test_d9_many_malformed_sessions);
        tcase_add_test(tc, test_l1_kill_mid_request);
        tcase_add_test(tc, test_l5_restart_under_load);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        return test_run_suite(suite());
}
