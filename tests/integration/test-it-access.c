/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* test-it-access: access control, read-only enforcement, REGISTER and quotas against the real iomemd, as other uids. */

/*
 * The test runs as root and the daemon too; every check of a rule runs in a
 * child that switched to another uid/gid (setresgid, setgroups, setresuid:
 * no passwd entries needed), so the kernel, not the test, says who it is.
 * A child reports one int through its exit status: 0, or an errno value
 * (1..254) for a negative result, 255 for a failure of the harness itself.
 */

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "iomem.h"
#include "itutil.h"
#include "proto.h"
#include "transport.h"

#define OWNER_UID 1001u
#define OWNER_GID 2001u
#define MEMBER_UID 1002u /* primary gid 3000, supplementary OWNER_GID */
#define PRIMARY_UID 1003u /* primary gid OWNER_GID */
#define OTHER_UID 1004u
#define OTHER_GID 3004u
#define CHILD_HARNESS_FAIL 255

static struct it_daemon daemon_;

/* Who a child runs as. */
struct ident {
        uid_t uid;
        gid_t gid;
        gid_t extra; /* one supplementary group, 0 = none */
};

static const struct ident owner_ = { OWNER_UID, OWNER_GID, 0 };
static const struct ident member_ = { MEMBER_UID, 3000, OWNER_GID };
static const struct ident primary_ = { PRIMARY_UID, OWNER_GID, 0 };
static const struct ident other_ = { OTHER_UID, OTHER_GID, 0 };

typedef int (*child_fn)(void *arg);

/* Run @fn as @id in a child. Return: fn's result (0 or a negative errno). */
static int run_as(const struct ident *id, child_fn fn, void *arg)
{
        int status;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                gid_t groups[1] = { id->extra };
                int r;

                if (setgroups(id->extra ? 1 : 0, groups) < 0 || setresgid(id->gid, id->gid, id->gid) < 0 ||
                    setresuid(id->uid, id->uid, id->uid) < 0)
                        _exit(CHILD_HARNESS_FAIL);
                r = fn(arg);
                if (r > 0 || r < -254)
                        _exit(CHILD_HARNESS_FAIL);
                _exit(-r);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status), "child died (status 0x%x)", status);
        ck_assert_msg(WEXITSTATUS(status) != CHILD_HARNESS_FAIL, "child harness failure");
        return -WEXITSTATUS(status);
}

static void start(const char *const *extra)
{
        it_daemon_start(&daemon_, extra);
        /* the socket is 0666; let other uids reach it through the test's directory */
        ck_assert_int_eq(chmod(daemon_.dir, 0755), 0);
}

static struct iomem_client *root_connect(void)
{
        return it_client_connect(&daemon_);
}

static void root_create(struct iomem_client *c, const char *name, uint64_t size, uint32_t mode,
                        enum iomem_backend backend)
{
        struct iomem_create_opts o = { .mode = mode, .backend = backend };
        struct iomem_region *region = NULL;
        int r = iomem_create(c, name, size, &o, &region);

        ck_assert_msg(r == 0, "create %s: %s", name, iomem_strerror(r));
        iomem_region_free(region);
}

/* ---- children ----------------------------------------------------------- */

/* The operation a child tries on a region, and its name. */
enum op { OP_OPEN_RO, OP_OPEN_RW, OP_STAT, OP_RESIZE, OP_SEAL, OP_CHMOD, OP_DELETE, OP_LIST_SEES, OP_COUNT };
static const char *const op_names[] = { "open-ro", "open-rw", "stat", "resize", "seal", "chmod", "delete", "list" };

struct op_arg {
        enum op op;
        const char *name;
};

static int list_find(const struct iomem_list_entry *e, void *userdata)
{
        return strcmp(e->name, userdata) == 0 ? 1 : 0;
}

static int child_op(void *p)
{
        const struct op_arg *a = p;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        struct iomem_stat st;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        switch (a->op) {
        case OP_OPEN_RO:
        case OP_OPEN_RW:
                r = iomem_open(c, a->name, a->op == OP_OPEN_RO ? IOMEM_OPEN_RDONLY : 0, 0, &region);
                iomem_region_free(region);
                break;
        case OP_STAT:
                r = iomem_stat(c, a->name, &st);
                break;
        case OP_RESIZE:
                r = iomem_resize(c, a->name, 8192);
                break;
        case OP_SEAL:
                r = iomem_seal(c, a->name, 0, NULL);
                break;
        case OP_CHMOD:
                r = iomem_chmod(c, a->name, 0666);
                break;
        case OP_DELETE:
                r = iomem_delete(c, a->name);
                break;
        case OP_LIST_SEES:
                r = iomem_list(c, "", list_find, (void *)a->name);
                r = r == 1 ? 0 : (r == 0 ? -ENOENT : r);
                break;
        default:
                r = -EINVAL;
        }
        iomem_disconnect(c);
        return r;
}

/* Create "m" (mode @mode, owner OWNER_UID:OWNER_GID) as the owner, then run @op as @who. Return: op's result. */
static int try_op(uint32_t mode, const struct ident *who, enum op op)
{
        struct op_arg a = { .op = op, .name = "m" };
        struct iomem_client *root = root_connect();
        int r;

        iomem_delete(root, "m");
        {
                /* RESIZABLE: the matrix is about who may resize, not about seals */
                struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE, .mode = 0600,
                                               .backend = IOMEM_BACKEND_MEMFD };
                struct iomem_region *region = NULL;

                ck_assert_int_eq(iomem_create(root, "m", 4096, &o, &region), 0);
                iomem_region_free(region);
        }
        ck_assert_int_eq(iomem_chown(root, "m", OWNER_UID, OWNER_GID), 0);
        ck_assert_int_eq(iomem_chmod(root, "m", mode), 0); /* CREATE cannot say 0: that is the default */
        r = run_as(who, child_op, &a);
        iomem_delete(root, "m");
        iomem_disconnect(root);
        return r;
}

/* ---- P2, P3: identity and the mode matrix ------------------------------- */

static int child_create_named(void *p)
{
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        struct iomem_create_opts o = { .mode = strcmp(p, "mine") == 0 ? 0640 : 0444 };
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r = iomem_create(c, p, 4096, &o, &region);
        /* the creator gets a read-write fd whatever the mode (as open(O_CREAT, 0444) does) */
        if (r == 0 && (iomem_region_flags(region) & IOMEM_REGION_RDONLY))
                r = -EPROTO;
        iomem_region_free(region);
        iomem_disconnect(c);
        return r;
}

/* P2: the owner recorded is the kernel's idea of the creator, not anything sent. */
START_TEST(test_p2_owner_is_peercred)
{
        struct iomem_client *root;
        struct iomem_stat st;

        start(NULL);
        ck_assert_int_eq(run_as(&member_, child_create_named, "mine"), 0);
        root = root_connect();
        ck_assert_int_eq(iomem_stat(root, "mine", &st), 0);
        ck_assert_uint_eq(st.uid, MEMBER_UID);
        ck_assert_uint_eq(st.gid, 3000);
        ck_assert_uint_eq(st.mode, 0640);
        /* a mode that denies the creator write: CREATE still succeeds, whole; later opens follow the mode */
        ck_assert_int_eq(run_as(&other_, child_create_named, "ro"), 0);
        ck_assert_int_eq(iomem_stat(root, "ro", &st), 0);
        ck_assert_uint_eq(st.uid, OTHER_UID);
        ck_assert_int_eq(run_as(&other_, child_op, &(struct op_arg){ .op = OP_OPEN_RW, .name = "ro" }), -EACCES);
        ck_assert_int_eq(run_as(&other_, child_op, &(struct op_arg){ .op = OP_OPEN_RO, .name = "ro" }), 0);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
}
END_TEST

/* P3 and the ownership rules: owner, group member (supplementary and primary), other, for each operation. */
START_TEST(test_p3_mode_matrix)
{
        static const struct {
                uint32_t mode;
                const struct ident *who;
                int expect[OP_COUNT]; /* 0 or -EACCES (LIST: -ENOENT = not shown) */
        } rows[] = {
                /*                    open-ro  open-rw  stat     resize   seal     chmod    delete   list */
                { 0640, &owner_,   { 0,       0,       0,       0,       0,       0,       0,       0 } },
                { 0640, &member_,  { 0,       -EACCES, 0,       -EACCES, -EACCES, -EACCES, -EACCES, 0 } },
                { 0640, &primary_, { 0,       -EACCES, 0,       -EACCES, -EACCES, -EACCES, -EACCES, 0 } },
                { 0640, &other_,   { -EACCES, -EACCES, -EACCES, -EACCES, -EACCES, -EACCES, -EACCES, -ENOENT } },
                { 0660, &member_,  { 0,       0,       0,       -EACCES, -EACCES, -EACCES, -EACCES, 0 } },
                /* as for files, a group member gets the group bits even when other has more */
                { 0604, &member_,  { -EACCES, -EACCES, -EACCES, -EACCES, -EACCES, -EACCES, -EACCES, -ENOENT } },
                { 0604, &other_,   { 0,       -EACCES, 0,       -EACCES, -EACCES, -EACCES, -EACCES, 0 } },
                { 0666, &other_,   { 0,       0,       0,       -EACCES, -EACCES, -EACCES, -EACCES, 0 } },
                { 0000, &owner_,   { -EACCES, -EACCES, -EACCES, 0,       0,       0,       0,       -ENOENT } },
        };

        start(NULL);
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
                for (int op = 0; op < OP_COUNT; op++) {
                        int r = try_op(rows[i].mode, rows[i].who, (enum op)op);

                        ck_assert_msg(r == rows[i].expect[op], "mode %04o uid %u %s: got %d, expected %d",
                                      rows[i].mode, (unsigned)rows[i].who->uid, op_names[op], r,
                                      rows[i].expect[op]);
                }
        }
        it_daemon_stop(&daemon_);
}
END_TEST

/*
 * Hostile review: CREATE of an existing name compared sizes before access,
 * so another uid learnt a region's exact size one guess at a time (-EEXIST
 * "another size", -EACCES for the right one).
 */
static int child_create_guess(void *p)
{
        const uint64_t *sizes = p;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        int r1, r2, r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r1 = iomem_create(c, "secret-size", sizes[0], NULL, &region);
        region = iomem_region_free(region);
        r2 = iomem_create(c, "secret-size", sizes[1], NULL, &region);
        region = iomem_region_free(region);
        iomem_disconnect(c);
        return r1 == r2 ? r1 : -EXDEV; /* EXDEV: the two answers differ */
}

START_TEST(test_create_tells_nothing_of_size)
{
        const uint64_t sizes[2] = { 4096, 3 * 4096 };
        struct iomem_client *c;
        int r;

        start(NULL);
        c = root_connect();
        root_create(c, "secret-size", 3 * 4096, 0600, IOMEM_BACKEND_MEMFD);
        r = run_as(&other_, child_create_guess, (void *)sizes);
        ck_assert_msg(r == -EACCES, "CREATE of another uid's region, wrong and right size: %s", iomem_strerror(r));
        iomem_disconnect(c);
        it_daemon_stop(&daemon_);
}
END_TEST

static int child_chown(void *p)
{
        const uint32_t *ids = p;
        struct iomem_client *c = NULL;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r = iomem_chown(c, "m", ids[0], ids[1]);
        iomem_disconnect(c);
        return r;
}

/* CHOWN: only root changes the owner; the owner may pick one of its own groups. */
START_TEST(test_chown_rules)
{
        uint32_t give[2] = { OTHER_UID, IOMEM_ID_UNCHANGED };
        uint32_t own_group[2] = { IOMEM_ID_UNCHANGED, OWNER_GID };
        uint32_t foreign_group[2] = { IOMEM_ID_UNCHANGED, OTHER_GID };
        struct iomem_client *root;
        struct iomem_stat st;

        start(NULL);
        root = root_connect();
        root_create(root, "m", 4096, 0600, IOMEM_BACKEND_MEMFD);
        ck_assert_int_eq(iomem_chown(root, "m", MEMBER_UID, 7), 0);
        /* member_ owns it now, primary gid 3000, member of OWNER_GID */
        ck_assert_int_eq(run_as(&member_, child_chown, give), -EACCES);
        ck_assert_int_eq(run_as(&member_, child_chown, foreign_group), -EACCES);
        ck_assert_int_eq(run_as(&member_, child_chown, own_group), 0);
        ck_assert_int_eq(run_as(&other_, child_chown, own_group), -EACCES);
        ck_assert_int_eq(iomem_stat(root, "m", &st), 0);
        ck_assert_uint_eq(st.uid, MEMBER_UID);
        ck_assert_uint_eq(st.gid, OWNER_GID);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
}
END_TEST

/* ---- P4: a read-only fd stays read-only, by every route ---------------- */

#define P4_MAGIC 0x5a

/* Return: 0 if every write route failed; -EPROTO (with the route's index in errno-space) if one worked. */
static int p4_routes(int fd)
{
        char path[64];
        void *p;
        int rw;

        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        rw = open(path, O_RDWR | O_CLOEXEC);
        if (rw >= 0) {
                close(rw);
                return -EPROTO; /* reopen read-write worked */
        }
        p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
                munmap(p, 4096);
                return -EBADE;
        }
        p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -EXFULL; /* the read-only holder must still be able to read */
        if (mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0) {
                munmap(p, 4096);
                return -EBADR;
        }
        munmap(p, 4096);
        if (write(fd, "x", 1) >= 0 || pwrite(fd, "x", 1, 0) >= 0)
                return -ENOANO;
        if (ftruncate(fd, 0) == 0 || ftruncate(fd, 1 << 20) == 0)
                return -EBADRQC;
        if (fallocate(fd, 0, 0, 1 << 20) == 0 || fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0)
                return -EBADSLT;
        /* making the inode writable first would open the door: only its owner may */
        if (fchmod(fd, 0666) == 0)
                return -EBFONT;
        return 0;
}

static int child_p4(void *p)
{
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r = iomem_open(c, p, IOMEM_OPEN_RDONLY, 0, &region);
        iomem_disconnect(c);
        if (r < 0)
                return r;
        if (!(iomem_region_flags(region) & IOMEM_REGION_RDONLY))
                r = -EPROTO;
        else
                r = p4_routes(iomem_region_fd(region));
        iomem_region_free(region);
        return r;
}

/* Return: the first byte of region @name, read by root. */
static int first_byte(struct iomem_client *root, const char *name)
{
        struct iomem_region *region = NULL;
        unsigned char *addr = NULL;
        int b;

        ck_assert_int_eq(iomem_open(root, name, IOMEM_OPEN_RDONLY, 0, &region), 0);
        ck_assert_int_eq(iomem_region_map(region, 0, 4096, PROT_READ, (void **)&addr), 0);
        b = addr[0];
        iomem_unmap(addr, 4096);
        iomem_region_free(region);
        return b;
}

/* P4 on each daemon backend, as a uid that may read but not write (mode 0644, owner root). */
START_TEST(test_p4_readonly_every_backend)
{
        static const enum iomem_backend backends[] = { IOMEM_BACKEND_MEMFD, IOMEM_BACKEND_SHM, IOMEM_BACKEND_FILE };
        struct iomem_client *root;

        start(NULL);
        root = root_connect();
        for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
                struct iomem_region *region = NULL;
                struct iomem_create_opts o = { .mode = 0644, .backend = backends[i] };
                unsigned char *addr = NULL;
                char name[16];
                int r;

                snprintf(name, sizeof(name), "ro%zu", i);
                ck_assert_int_eq(iomem_create(root, name, 4096, &o, &region), 0);
                ck_assert_int_eq(iomem_region_map(region, 0, 4096, PROT_READ | PROT_WRITE, (void **)&addr), 0);
                addr[0] = P4_MAGIC;
                iomem_unmap(addr, 4096);
                iomem_region_free(region);

                r = run_as(&other_, child_p4, name);
                ck_assert_msg(r == 0, "backend %s: a write route worked or reading failed (%d)",
                              iomem_backend_name(backends[i]), r);
                ck_assert_int_eq(first_byte(root, name), P4_MAGIC);
        }
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
}
END_TEST

/* ---- REGISTER ------------------------------------------------------------ */

/* A raw connection (the library cannot send arbitrary fds), after HELLO. */
struct raw {
        int fd;
        struct transport t;
};

static void raw_open(struct raw *c)
{
        struct proto_hello hello = { .min_version = 1, .max_version = 1 };
        struct proto_header h = { .opcode = PROTO_OP_HELLO, .id = 1 };
        struct transport_frame f;
        uint8_t buf[64];

        c->fd = fdutil_connect(daemon_.socket);
        ck_assert_int_ge(c->fd, 0);
        ck_assert_int_eq(transport_init(&c->t, c->fd, 0, 0), 0);
        ck_assert_int_eq(transport_send_blocking(&c->t, &h, buf, (size_t)proto_hello_encode(&hello, buf, sizeof(buf)),
                                                 NULL, 0, 10000),
                         0);
        ck_assert_int_eq(transport_recv_blocking(&c->t, &f, 10000), 1);
        ck_assert(!(f.hdr.flags & PROTO_FLAG_ERROR));
        transport_frame_deinit(&f);
}

static void raw_close(struct raw *c)
{
        transport_deinit(&c->t);
        close(c->fd);
}

/* REGISTER @fd (consumed) as @name with @size. Return: 0 or the daemon's error. */
static int raw_register(struct raw *c, const char *name, uint64_t size, int fd)
{
        static uint32_t id = 100;
        struct proto_register m = { .size = size, .name = name };
        struct proto_header h = { .opcode = PROTO_OP_REGISTER, .id = ++id };
        struct proto_error err;
        struct transport_frame f;
        uint8_t buf[512];
        int r;

        ck_assert_int_eq(transport_send_blocking(&c->t, &h, buf, (size_t)proto_register_encode(&m, buf, sizeof(buf)),
                                                 &fd, 1, 10000),
                         0);
        /* a daemon that blocked on the fd would never answer: the receive times out and the test fails */
        ck_assert_int_eq(transport_recv_blocking(&c->t, &f, 10000), 1);
        ck_assert_uint_eq(f.hdr.id, id);
        ck_assert_uint_eq(f.nfds, 0);
        if (f.hdr.flags & PROTO_FLAG_ERROR) {
                ck_assert_int_eq(proto_error_decode(f.payload, f.hdr.length, &err), 0);
                r = err.error;
        } else {
                struct proto_register_reply rep;

                ck_assert_int_eq(proto_register_reply_decode(f.payload, f.hdr.length, &rep), 0);
                r = 0;
        }
        transport_frame_deinit(&f);
        return r;
}

/* A memfd of @size bytes, mode @mode, with @seals. Return: the fd. */
static int make_memfd(uint64_t size, mode_t mode, unsigned seals)
{
        int fd = memfd_create("it-access", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
        ck_assert_int_eq(fchmod(fd, mode), 0);
        if (seals)
                ck_assert_int_eq(fcntl(fd, F_ADD_SEALS, seals), 0);
        return fd;
}

/* D7, D8, P7: each kind of bad fd is refused at once; a good memfd with extra seal bits is accepted. */
START_TEST(test_d7_register_bad_fds)
{
        const unsigned need = F_SEAL_SHRINK | F_SEAL_GROW;
        struct iomem_client *root;
        struct iomem_stat st;
        struct raw c;
        int sv[2], pfd[2], fd;
        char path[160];

        start(NULL);
        raw_open(&c);

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(raw_register(&c, "bad", 0, sv[0]), -EINVAL);
        close(sv[1]);
        ck_assert_int_eq(pipe2(pfd, O_CLOEXEC), 0);
        ck_assert_int_eq(raw_register(&c, "bad", 0, pfd[0]), -EINVAL); /* an empty pipe: reading would block */
        ck_assert_int_eq(raw_register(&c, "bad", 0, pfd[1]), -EINVAL);
        fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ck_assert_int_eq(raw_register(&c, "bad", 0, fd), -EINVAL);
        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        ck_assert_int_eq(raw_register(&c, "bad", 0, fd), -EINVAL);
        snprintf(path, sizeof(path), "%s/plain", daemon_.dir);
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(raw_register(&c, "bad", 0, fd), -EINVAL); /* a regular file, not a memfd */
        unlink(path);
        fd = make_memfd(4096, 0600, need);
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        sv[0] = open(path, O_PATH | O_CLOEXEC);
        ck_assert_int_ge(sv[0], 0);
        ck_assert_int_eq(raw_register(&c, "bad", 4096, sv[0]), -EINVAL); /* O_PATH */
        sv[0] = open(path, O_RDONLY | O_CLOEXEC);
        ck_assert_int_ge(sv[0], 0);
        ck_assert_int_eq(raw_register(&c, "bad", 4096, sv[0]), -EINVAL); /* read-only */
        ck_assert_int_eq(raw_register(&c, "bad", 8192, fd), -EINVAL);    /* not the declared size */

        ck_assert_int_eq(raw_register(&c, "bad", 4096, make_memfd(4096, 0600, 0)), -EPERM);
        ck_assert_int_eq(raw_register(&c, "bad", 4096, make_memfd(4096, 0600, F_SEAL_SHRINK)), -EPERM);
        ck_assert_int_eq(raw_register(&c, "bad", 4096, make_memfd(4096, 0600, F_SEAL_GROW)), -EPERM);
        ck_assert_int_eq(raw_register(&c, "bad", 4096, make_memfd(4096, 0666, need)), -EPERM);  /* others write */
        ck_assert_int_eq(raw_register(&c, "bad", 4096, make_memfd(4096, 0620, need)), -EPERM);  /* group writes */
        ck_assert_int_eq(raw_register(&c, "bad", 4096, make_memfd(4096, 0700, need)), -EPERM);  /* executable */

        root = root_connect();
        ck_assert_int_eq(iomem_stat(root, "bad", &st), -ENOENT);
        /* P7: more seal bits than required are fine; a write seal makes the inode mode irrelevant */
        ck_assert_int_eq(raw_register(&c, "good1", 4096, make_memfd(4096, 0644, need | F_SEAL_SEAL)), 0);
        ck_assert_int_eq(raw_register(&c, "good2", 4096, make_memfd(4096, 0666, need | F_SEAL_FUTURE_WRITE)), 0);
        ck_assert_int_eq(raw_register(&c, "good1", 4096, make_memfd(4096, 0600, need)), -EEXIST);
        ck_assert_int_eq(iomem_stat(root, "good1", &st), 0);
        ck_assert_uint_eq(st.size, 4096);
        ck_assert_uint_eq(st.seals & need, need);
        ck_assert_uint_eq(st.backend, IOMEM_BACKEND_MEMFD);
        iomem_disconnect(root);
        raw_close(&c);
        it_daemon_stop(&daemon_);
}
END_TEST

struct reg_arg {
        const char *name;
        uint32_t mode;
        uint32_t flags;
        unsigned char fill;
};

/* Make a memfd here (0600, sealed), fill it, register it. */
static int child_register(void *p)
{
        const struct reg_arg *a = p;
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        unsigned char *addr = NULL;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r = iomem_region_new_local(4096, IOMEM_BACKEND_MEMFD, 0, &region);
        if (r == 0)
                r = iomem_region_map(region, 0, 4096, PROT_READ | PROT_WRITE, (void **)&addr);
        if (r == 0) {
                memset(addr, a->fill, 4096);
                iomem_unmap(addr, 4096);
                r = iomem_region_seal(region, IOMEM_REGISTER_SEALS);
        }
        if (r == 0)
                r = iomem_register(c, a->name, region, a->flags, a->mode, NULL);
        iomem_region_free(region);
        iomem_disconnect(c);
        return r;
}

/* A registered memfd: its owner is the registrant, it outlives the registrant, readers stay read-only (P4). */
START_TEST(test_register_share_readonly)
{
        struct reg_arg a = { .name = "pub", .mode = 0644, .fill = P4_MAGIC };
        struct op_arg rw = { .op = OP_OPEN_RW, .name = "pub" };
        struct iomem_client *root;
        struct iomem_stat st;

        start(NULL);
        ck_assert_int_eq(run_as(&owner_, child_register, &a), 0);
        root = root_connect();
        ck_assert_int_eq(iomem_stat(root, "pub", &st), 0);
        ck_assert_uint_eq(st.uid, OWNER_UID);
        ck_assert_uint_eq(st.mode, 0644);
        ck_assert_int_eq(first_byte(root, "pub"), P4_MAGIC);
        ck_assert_int_eq(run_as(&other_, child_op, &rw), -EACCES);
        ck_assert_int_eq(run_as(&other_, child_p4, "pub"), 0);
        ck_assert_int_eq(first_byte(root, "pub"), P4_MAGIC);
        /* the owner may open it read-write through the daemon */
        ck_assert_int_eq(run_as(&owner_, child_op, &rw), 0);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
}
END_TEST

/* ---- R2, R3, R6, P1: quotas and the allow-list -------------------------- */

struct create_arg {
        const char *prefix;
        int count;
        uint64_t size;
};

/* Create @count regions "<prefix>N" on one connection. Return: 0, or the first error. */
static int child_create_many(void *p)
{
        const struct create_arg *a = p;
        struct iomem_client *c = NULL;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        for (int i = 0; i < a->count && r == 0; i++) {
                struct iomem_region *region = NULL;
                char name[64];

                snprintf(name, sizeof(name), "%s%d", a->prefix, i);
                r = iomem_create(c, name, a->size, NULL, &region);
                iomem_region_free(region);
        }
        iomem_disconnect(c);
        return r;
}

static int child_quota_regions(void *p)
{
        struct iomem_client *c = NULL;
        struct iomem_quota q;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r = iomem_quota(c, &q);
        iomem_disconnect(c);
        if (r < 0)
                return r;
        return q.regions == *(uint64_t *)p ? 0 : -ERANGE;
}

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        ck_assert_int_eq(fclose(f), 0);
}

/* Start the daemon with the configuration file @conf (@size bytes, named after @tag) holding @text. */
static void start_with_config(char *conf, size_t size, const char *tag, const char *text)
{
        const char *const extra[] = { "--config", conf, NULL };

        snprintf(conf, size, "/tmp/iomem-it-access-%s%d.conf", tag, (int)getpid());
        write_file(conf, text);
        start(extra);
}

/* R2, R3: one uid exhausts its quotas; another keeps working; the size limit is -EFBIG. */
START_TEST(test_r2_quota_per_uid)
{
        const char *const extra[] = { "--quota-regions", "3", "--max-region-size", "1M", NULL };
        struct create_arg four = { "o", 4, 4096 }, two = { "x", 2, 4096 }, big = { "big", 1, 2 << 20 };
        uint64_t three = 3, zero = 0;
        struct iomem_client *root;

        start(extra);
        ck_assert_int_eq(run_as(&owner_, child_create_many, &four), -EDQUOT);
        ck_assert_int_eq(run_as(&owner_, child_quota_regions, &three), 0);
        /* another uid is unaffected */
        ck_assert_int_eq(run_as(&other_, child_create_many, &two), 0);
        ck_assert_int_eq(run_as(&other_, child_create_many, &big), -EFBIG);
        /* deleting gives the quota back */
        root = root_connect();
        ck_assert_int_eq(iomem_delete(root, "o0"), 0);
        ck_assert_int_eq(run_as(&owner_, child_quota_regions, &(uint64_t){ 2 }), 0);
        ck_assert_int_eq(run_as(&primary_, child_quota_regions, &zero), 0);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
}
END_TEST

/* Create RESIZABLE region @p (4 KiB) as the child's uid. Return: 0, or the error. */
static int child_create_resizable(void *p)
{
        struct iomem_create_opts o = { .flags = IOMEM_CREATE_RESIZABLE, .backend = IOMEM_BACKEND_MEMFD };
        struct iomem_client *c = NULL;
        struct iomem_region *region = NULL;
        int r;

        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return r;
        r = iomem_create(c, p, 4096, &o, &region);
        iomem_region_free(region);
        iomem_disconnect(c);
        return r;
}

/*
 * A quota check for another uid than the requester's (root's RESIZE of someone else's region) reads the
 * owner's limits as the owner's own requests would: with the [gid] section of its primary group (that of its
 * last connection), looser or tighter than the defaults. Before, that section was ignored: root's RESIZE was
 * checked against the defaults.
 */
START_TEST(test_other_uid_quota_reads_owner_group)
{
        char conf[128];
        struct iomem_client *root;

        start_with_config(conf, sizeof(conf), "othergid-",
                          "quota-bytes = 64K\n"
                          "[gid 2001]\nquota-bytes = 1M\n"
                          "[gid 3004]\nquota-bytes = 16K\n");
        /* owner_ (primary gid 2001) may hold 1M; other_ (primary gid 3004) 16K */
        ck_assert_int_eq(run_as(&owner_, child_create_resizable, "wide"), 0);
        ck_assert_int_eq(run_as(&other_, child_create_resizable, "narrow"), 0);
        root = root_connect();
        ck_assert_msg(iomem_resize(root, "wide", 512 << 10) == 0,
                      "root's RESIZE of uid 1001's region to 512K was refused: its [gid 2001] quota-bytes (1M) "
                      "not read");
        ck_assert_msg(iomem_resize(root, "narrow", 32 << 10) == -EDQUOT,
                      "root's RESIZE of uid 1004's region to 32K passed its [gid 3004] quota-bytes (16K)");
        /* the same limits as the owners' own requests */
        ck_assert_int_eq(iomem_resize(root, "narrow", 16 << 10), 0);
        ck_assert_int_eq(iomem_resize(root, "wide", 1 << 20), 0);
        ck_assert_int_eq(iomem_resize(root, "wide", (1 << 20) + 4096), -EDQUOT);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
        unlink(conf);
}
END_TEST

/* Per-uid and per-group overrides from the configuration file; SIGHUP reloads it; a bad file is ignored. */
START_TEST(test_config_overrides_and_reload)
{
        char conf[128];
        struct create_arg one = { "a", 1, 4096 }, more = { "b", 2, 4096 }, bytes = { "c", 1, 64 << 10 };
        struct create_arg small = { "d", 2, 4096 }, another = { "e", 1, 4096 };
        struct iomem_client *root;
        struct iomem_quota q;

        start_with_config(conf, sizeof(conf), "",
                          "quota-regions = 10\n"
                          "[gid 2001]\nquota-regions = 1\n"
                          "[uid 1004]\nquota-bytes = 32K\n");
        /* owner_ and primary_ have primary gid 2001: one region each */
        ck_assert_int_eq(run_as(&owner_, child_create_many, &one), 0);
        ck_assert_int_eq(run_as(&owner_, child_create_many, &more), -EDQUOT);
        /* a [uid] section: a byte limit */
        ck_assert_int_eq(run_as(&other_, child_create_many, &bytes), -EDQUOT);
        ck_assert_int_eq(run_as(&other_, child_create_many, &small), 0);

        write_file(conf, "quota-regions = 10\n[gid 2001]\nquota-regions = 3\n");
        ck_assert_int_eq(kill(daemon_.pid, SIGHUP), 0);
        root = root_connect();
        /* bounded polling: the reload is asynchronous (no timing assertion) */
        for (int i = 0; i < 500 && run_as(&owner_, child_create_many, &more) != 0; i++)
                it_sleep_ms(10);
        ck_assert_int_eq(run_as(&owner_, child_quota_regions, &(uint64_t){ 3 }), 0);

        /* a bad file keeps the running configuration (not the defaults, not half of the file), and the daemon */
        write_file(conf, "quota-regions = 1\n[gid 2001]\nquota-regions = lots\n");
        ck_assert_int_eq(kill(daemon_.pid, SIGHUP), 0);
        for (int i = 0; i < 20; i++) { /* give the signal a chance to be handled; the checks hold either way */
                ck_assert_int_eq(iomem_ping(root), 0);
                it_sleep_ms(10);
        }
        ck_assert_int_eq(iomem_quota(root, &q), 0);
        ck_assert_uint_eq(q.max_regions, 10);
        ck_assert_int_eq(run_as(&owner_, child_create_many, &another), -EDQUOT);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
        unlink(conf);
}
END_TEST

struct conn_arg {
        int n;
};

/* Hold @n connections; Return: 0, or the error of the first one refused. */
static int child_connect_many(void *p)
{
        const struct conn_arg *a = p;
        struct iomem_client *c[16] = { NULL };
        int r = 0;

        /* iomem_connect() does not wait for the HELLO reply: the refusal comes with the handshake */
        for (int i = 0; i < a->n && i < 16 && r == 0; i++) {
                r = iomem_connect(daemon_.socket, &c[i]);
                if (r == 0)
                        r = iomem_client_handshake(c[i]);
        }
        for (int i = 0; i < 16; i++)
                iomem_disconnect(c[i]);
        return r;
}

/* A connection held open across a reload by a child: it connects and pings, then waits for the go. */
struct held_conn {
        int go[2], ready[2];
        pid_t pid;
};

/*
 * Fork a child as @uid (gid @gid, supplementary @groups) that connects, pings and then waits for
 * held_conn_finish(). In the child: return its client (exit CHILD_HARNESS_FAIL if any of that fails).
 * In the parent: return NULL once the child is connected.
 */
static struct iomem_client *held_conn_fork(struct held_conn *h, uid_t uid, gid_t gid, const gid_t *groups,
                                           size_t ngroups)
{
        struct iomem_client *c = NULL;
        char byte = 0;

        ck_assert_int_eq(pipe2(h->go, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(h->ready, O_CLOEXEC), 0);
        fflush(NULL);
        h->pid = fork();
        ck_assert_int_ge(h->pid, 0);
        if (h->pid == 0) {
                if (setgroups(ngroups, groups) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(CHILD_HARNESS_FAIL);
                if (iomem_connect(daemon_.socket, &c) < 0 || iomem_ping(c) < 0)
                        _exit(CHILD_HARNESS_FAIL);
                if (write(h->ready[1], "r", 1) != 1 || read(h->go[0], &byte, 1) != 1)
                        _exit(CHILD_HARNESS_FAIL);
                return c;
        }
        close(h->go[0]);
        close(h->ready[1]);
        ck_assert_int_eq(read(h->ready[0], &byte, 1), 1);
        return NULL;
}

/*
 * Write @text to @conf, SIGHUP, and poll (bounded) until the reload took effect: uid 1004 is refused. A probe the
 * daemon accepted before it handled the SIGHUP is one more connection the reload drops (and counts): not for a test
 * that checks the reload's drop count.
 */
static void reload_until_other_refused(const char *conf, const char *text)
{
        struct conn_arg one = { 1 };
        int r = 0;

        write_file(conf, text);
        ck_assert_int_eq(kill(daemon_.pid, SIGHUP), 0);
        for (int i = 0; i < 500 && (r = run_as(&other_, child_connect_many, &one)) != -EACCES; i++)
                it_sleep_ms(10);
        ck_assert_int_eq(r, -EACCES);
}

/* Let the held child go on, reap it and return its wait status (a harness failure fails the test). */
static int held_conn_finish(struct held_conn *h)
{
        int status;

        ck_assert_int_eq(write(h->go[1], "g", 1), 1);
        ck_assert_int_eq(waitpid(h->pid, &status, 0), h->pid);
        close(h->go[1]);
        close(h->ready[0]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) != CHILD_HARNESS_FAIL, "child harness failure");
        return status;
}

/*
 * A uid taken out of the allow-list by SIGHUP loses the connections it has
 * open, not only the ones it would make: they could go on creating, opening
 * (a parked OPEN answered later included) and receiving events for as long as
 * they stayed connected.
 */
START_TEST(test_allow_list_reload_drops_open_connections)
{
        char conf[128];
        struct held_conn h;
        struct iomem_client *c;
        int status;

        start_with_config(conf, sizeof(conf), "allow-", "allow-uids = 1001, 1004\n");
        c = held_conn_fork(&h, OTHER_UID, OTHER_GID, NULL, 0);
        if (h.pid == 0) {
                struct iomem_region *region = NULL;
                int r = iomem_create(c, "revoked", 4096, NULL, &region);

                iomem_region_free(region);
                iomem_disconnect(c);
                _exit(r == 0 ? 0 : 1);
        }
        /* uid 1004 is connected; take it out of the list */
        reload_until_other_refused(conf, "allow-uids = 1001\n");
        status = held_conn_finish(&h);
        ck_assert_msg(WEXITSTATUS(status) == 1,
                      "a connection opened before uid 1004 left the allow-list could still CREATE after the reload");
        it_daemon_stop(&daemon_);
        unlink(conf);
}
END_TEST

/*
 * The reload keeps a connection the new list admits through a supplementary
 * group only: uid 1002 (primary 3000, member of 2001) connected under
 * allow-uids (its groups not read then); after the reload to allow-gids 2001
 * the same connection must still be served.
 */
START_TEST(test_allow_list_reload_keeps_group_members)
{
        char conf[128];
        const gid_t groups[1] = { OWNER_GID };
        struct held_conn h;
        struct iomem_client *c;
        int status;

        start_with_config(conf, sizeof(conf), "allowg-", "allow-uids = 1002, 1004\n");
        c = held_conn_fork(&h, MEMBER_UID, 3000, groups, 1);
        if (h.pid == 0) {
                struct iomem_region *region = NULL;
                int r = iomem_create(c, "kept", 4096, NULL, &region);

                /* the client connects again on its own: the same connection must have served it */
                if (r == 0 && iomem_client_reconnects(c) != 0)
                        r = -ECONNRESET;
                iomem_region_free(region);
                iomem_disconnect(c);
                _exit(r == 0 ? 0 : 1);
        }
        /* uid 1004, no longer listed, is refused once the reload took effect */
        reload_until_other_refused(conf, "allow-gids = 2001\n");
        status = held_conn_finish(&h);
        ck_assert_msg(WEXITSTATUS(status) == 0,
                      "a connection admitted by its supplementary group was dropped by the reload");
        it_daemon_stop(&daemon_);
        unlink(conf);
}
END_TEST

/* How many connections test_reload_drop_log_bounded holds; more than the daemon logs one by one (10). */
#define DROP_LOG_CONNS 24

/* Count the lines of @path that contain @text. */
static int count_lines(const char *path, const char *text)
{
        char line[512];
        int n = 0;
        FILE *f = fopen(path, "re");

        ck_assert_ptr_nonnull(f);
        while (fgets(line, sizeof(line), f))
                if (strstr(line, text))
                        n++;
        fclose(f);
        return n;
}

/*
 * Poll (bounded) until a line of @path contains @text: the daemon writes its log lines unbuffered, so a line
 * there is done. Fails the test if none comes.
 */
static void wait_for_line(const char *path, const char *text)
{
        for (int i = 0; i < 500 && count_lines(path, text) == 0; i++)
                it_sleep_ms(10);
        ck_assert_msg(count_lines(path, text) > 0, "no line '%s' in %s", text, path);
}

/*
 * A reload that drops many connections logs a bounded number of lines plus
 * one with their count, not one line each: a hostile uid's 10,000 connections
 * would otherwise write 10,000 lines at once. The daemon's stderr goes to a
 * file; uid 1004 holds DROP_LOG_CONNS connections and is taken out of the list.
 */
START_TEST(test_reload_drop_log_bounded)
{
        char conf[128], log[128], reloaded[256];
        const char *extra[] = { "--config", conf, "--log-level", "notice", NULL };
        int go[2], ready[2], saved, logfd, status;
        char byte = 0;
        pid_t pid;

        snprintf(conf, sizeof(conf), "/tmp/iomem-it-access-droplog-%d.conf", (int)getpid());
        snprintf(log, sizeof(log), "/tmp/iomem-it-access-droplog-%d.log", (int)getpid());
        write_file(conf, "allow-uids = 1001, 1004\n");
        logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(logfd, 0);
        saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        ck_assert_int_ge(saved, 0);
        fflush(NULL);
        ck_assert_int_eq(dup2(logfd, STDERR_FILENO), STDERR_FILENO); /* the daemon inherits it */
        start(extra);
        ck_assert_int_eq(dup2(saved, STDERR_FILENO), STDERR_FILENO);
        close(saved);
        close(logfd);

        ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(ready, O_CLOEXEC), 0);
        fflush(NULL);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                struct iomem_client *c[DROP_LOG_CONNS] = { NULL };

                if (setgroups(0, NULL) < 0 || setresgid(OTHER_GID, OTHER_GID, OTHER_GID) < 0 ||
                    setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
                        _exit(CHILD_HARNESS_FAIL);
                for (int i = 0; i < DROP_LOG_CONNS; i++)
                        if (iomem_connect(daemon_.socket, &c[i]) < 0 || iomem_ping(c[i]) < 0)
                                _exit(CHILD_HARNESS_FAIL);
                if (write(ready[1], "r", 1) != 1 || read(go[0], &byte, 1) != 1)
                        _exit(CHILD_HARNESS_FAIL);
                for (int i = 0; i < DROP_LOG_CONNS; i++)
                        iomem_disconnect(c[i]);
                _exit(0);
        }
        close(go[0]);
        close(ready[1]);
        ck_assert_int_eq(read(ready[0], &byte, 1), 1);
        /*
         * Wait for the reload's last line, not for a new uid-1004 connection to be refused as
         * reload_until_other_refused() does: such a probe, accepted before the daemon handled the SIGHUP, is
         * one more uid-1004 connection the reload drops and counts (25, not 24).
         */
        write_file(conf, "allow-uids = 1001\n");
        ck_assert_int_eq(kill(daemon_.pid, SIGHUP), 0);
        snprintf(reloaded, sizeof(reloaded), "SIGHUP: configuration reloaded from %s", conf);
        wait_for_line(log, reloaded);
        ck_assert_int_eq(write(go[1], "g", 1), 1);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        close(go[1]);
        close(ready[0]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child harness failure");
        it_daemon_stop(&daemon_);

        ck_assert_msg(count_lines(log, "dropping connection of") == 10,
                      "%d lines 'dropping connection of' for %d connections dropped by one reload (10 expected)",
                      count_lines(log, "dropping connection of"), DROP_LOG_CONNS);
        ck_assert_int_eq(count_lines(log, "SIGHUP: 24 connections dropped: no longer in the allow-list (10 logged above)"), 1);
        unlink(log);
        unlink(conf);
}
END_TEST

/*
 * iomem_connect() holds HELLO back and sends it with the first request (one round trip): a refused peer's
 * connect succeeds, and its first request returns the refusal, with the daemon's message; the connection is
 * closed after it.
 */
static int child_connect_ping(void *p)
{
        struct iomem_client *c = NULL;
        int r;

        (void)p;
        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return -EPROTO; /* not expected: connect() itself asks the daemon nothing */
        r = iomem_ping(c);
        if (r == -EACCES && (!*iomem_client_error_message(c) || iomem_ping(c) != -ENOTCONN))
                r = -EPROTO; /* the refusal says why, and the connection is closed after it */
        iomem_disconnect(c);
        return r;
}

static void refused_ping_done(struct iomem_client *c, int r, void *userdata)
{
        (void)c;
        *(int *)userdata = r;
}

/* The same through the asynchronous API: the held-back HELLO goes with the first request, the callback gets the refusal. */
static int child_connect_ping_async(void *p)
{
        struct iomem_client *c = NULL;
        int r, result = 1;

        (void)p;
        r = iomem_connect(daemon_.socket, &c);
        if (r < 0)
                return -EPROTO;
        r = iomem_ping_async(c, refused_ping_done, &result);
        while (r == 0 && result == 1) {
                struct pollfd pfd = { .fd = iomem_client_fd(c), .events = POLLIN };

                if (poll(&pfd, 1, -1) < 0)
                        r = -errno;
                else if (iomem_client_process(c) < 0 && result == 1)
                        r = -EPROTO; /* broken without calling back */
        }
        iomem_disconnect(c);
        return r < 0 ? r : result;
}

/* R6: a uid at its connection cap gets -EDQUOT at connect; others still connect. */
START_TEST(test_r6_connection_quota)
{
        const char *const extra[] = { "--quota-connections", "3", NULL };
        struct conn_arg three = { 3 }, four = { 4 };

        start(extra);
        ck_assert_int_eq(run_as(&owner_, child_connect_many, &three), 0);
        ck_assert_int_eq(run_as(&owner_, child_connect_many, &four), -EDQUOT);
        ck_assert_int_eq(run_as(&other_, child_connect_many, &three), 0);
        it_daemon_stop(&daemon_);
}
END_TEST

/* P1: with an allow-list, others are refused at accept (-EACCES), before any parsing; root always passes. */
START_TEST(test_p1_allow_list)
{
        char gids[32];
        const char *const extra[] = { "--allow-uids", "1001", "--allow-gids", gids, NULL };
        struct conn_arg one = { 1 };
        struct iomem_client *root;

        snprintf(gids, sizeof(gids), "%u", OWNER_GID);
        start(extra);
        ck_assert_int_eq(run_as(&owner_, child_connect_many, &one), 0);
        ck_assert_int_eq(run_as(&member_, child_connect_many, &one), 0); /* supplementary group */
        ck_assert_int_eq(run_as(&other_, child_connect_many, &one), -EACCES);
        ck_assert_int_eq(run_as(&other_, child_connect_ping, NULL), -EACCES);
        ck_assert_int_eq(run_as(&member_, child_connect_ping, NULL), 0);
        ck_assert_int_eq(run_as(&other_, child_connect_ping_async, NULL), -EACCES);
        ck_assert_int_eq(run_as(&member_, child_connect_ping_async, NULL), 0);
        root = root_connect();
        ck_assert_int_eq(iomem_ping(root), 0);
        iomem_disconnect(root);
        it_daemon_stop(&daemon_);
}
END_TEST

static Suite *access_suite(void)
{
        Suite *s = suite_create("it-access");
        TCase *tc = tcase_create("access");

        tcase_add_checked_fixture(tc, test_fd_setup, test_fd_teardown);
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_p2_owner_is_peercred);
        tcase_add_test(tc, test_p3_mode_matrix);
        tcase_add_test(tc, test_create_tells_nothing_of_size);
        tcase_add_test(tc, test_chown_rules);
        tcase_add_test(tc, test_p4_readonly_every_backend);
        tcase_add_test(tc, test_d7_register_bad_fds);
        tcase_add_test(tc, test_register_share_readonly);
        tcase_add_test(tc, test_r2_quota_per_uid);
        tcase_add_test(tc, test_config_overrides_and_reload);
        tcase_add_test(tc, test_other_uid_quota_reads_owner_group);
        tcase_add_test(tc, test_allow_list_reload_drops_open_connections);
        tcase_add_test(tc, test_allow_list_reload_keeps_group_members);
        tcase_add_test(tc, test_reload_drop_log_bounded);
        tcase_add_test(tc, test_r6_connection_quota);
        tcase_add_test(tc, test_p1_allow_list);
        suite_add_tcase(s, tc);
        return s;
}

int main(void)
{
        if (geteuid() != 0) {
                fprintf(stderr, "test-it-access needs root (it switches children to other uids): skipped\n");
                return 77;
        }
        return test_run_suite(access_suite());
}
