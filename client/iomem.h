/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* iomem.h: libiomem, the client library of iomemd (memory regions shared by fd). */
#pragma once

/*
 * Two halves:
 *   - local regions (no daemon): iomem_region_new_local() makes a memory
 *     object with memfd_create, shm_open or an unlinked temporary file;
 *   - daemon regions: iomem_connect() to iomemd, then create/open/... by name.
 * Both give a struct iomem_region, which owns one fd and can be mapped.
 *
 * Errors: every function returning int returns 0 (or a documented
 * non-negative value) on success and a negative errno on failure, exactly as
 * the daemon sent it. iomem_strerror() turns one into words.
 *
 * Restarts: when the daemon closes the connection (it exited, crashed or
 * was restarted), the next call connects again on its own to the same
 * path, retrying for up to iomem_client_set_reconnect()'s window (default
 * IOMEM_RECONNECT_DEFAULT_MS, capped by the reply timeout if one is set).
 * A request that could not be sent because the daemon was already gone is
 * sent on the new connection (it was never applied). A request whose
 * reply was lost with the connection is sent again only if repeating it is
 * harmless: OPEN (a waiting OPEN with what is left of its time), STAT,
 * LIST (the page is asked again with the same cursor), PING, STATUS, QUOTA, METRICS.
 * CREATE, DELETE, RESIZE, SEAL, CHMOD, CHOWN and REGISTER are never sent
 * twice: they return -ECONNRESET, which means "the connection ended after
 * the request was sent: whether it was applied is unknown" (look with
 * iomem_stat() before repeating it). Regions already received, and their
 * mappings, are unaffected by any of this.
 *
 * Leases cannot survive a restart: a region created with
 * IOMEM_CREATE_LEASE (or registered with IOMEM_REGISTER_LEASE) is deleted
 * when the connection that made it ends, and a daemon restart ends it.
 * iomem_client_reconnects() tells a lease holder that this happened.
 *
 * When no daemon answers again within the window, the call returns
 * -ENOTCONN and iomem_client_error_message() says why; the next call tries
 * again.
 *
 * A broken connection otherwise stays broken: after a reply timeout
 * (-ETIMEDOUT, see iomem_client_set_timeout()) or a reply that does not
 * answer the request (-EPROTO), a later reply could be taken for the answer
 * to a later request, so every further call on that client fails with
 * -ENOTCONN (the daemon is still there, and reconnecting would silently end
 * this connection's leases). Disconnect and connect again.
 *
 * Access control: the daemon identifies a connection by the uid and groups
 * the kernel reports for it (SO_PEERCRED), never by anything sent. A named
 * region has an owner uid and gid and a mode (owner/group/other read 4,
 * write 2): OPEN read-only needs read, OPEN read-write needs write; RESIZE,
 * SEAL, DELETE and CHMOD need ownership; uid 0 may do anything. Refusals
 * are -EACCES; quotas give -EDQUOT (docs/security.md).
 *
 * Threads: a struct iomem_client may be shared by several threads: calls
 * on it from different threads may overlap, each gets its own reply
 * (requests are sent under the client's lock and replies routed to their
 * caller by request id; one thread reads the socket at a time while the
 * others wait for it; a call whose request waits for room in a full socket
 * buffer waits without the lock and reads the replies meanwhile, so a daemon
 * that stops reading until its replies are read never waits on it). What is shared: iomem_client_error_message() is the
 * detail of the last error reply any thread got; iomem_next_event() takes
 * the next event whichever thread asks; a reply timeout or a daemon restart
 * affects the calls of every thread (see above: calls then in flight fail
 * with -ETIMEDOUT, -ECONNRESET or -ENOTCONN, or are sent again if harmless).
 * iomem_disconnect() must not overlap any other call (but a callback of
 * iomem_client_process(), iomem_list() or iomem_metrics() may call it, see
 * there). Callbacks
 * (iomem_list(), iomem_metrics(), the asynchronous ones) run without the
 * lock held and may call the client. Regions are independent of the client
 * that produced them and may be used from any thread; a single region must
 * not be resized or freed while another thread uses it. Every fd the library
 * creates or receives is close-on-exec.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum iomem_backend {
        IOMEM_BACKEND_AUTO = 0,
        IOMEM_BACKEND_MEMFD = 1,
        IOMEM_BACKEND_SHM = 2,
        IOMEM_BACKEND_FILE = 3,
};

/* seals: the Linux F_SEAL_* bits */
#define IOMEM_SEAL_SEAL 0x0001u
#define IOMEM_SEAL_SHRINK 0x0002u
#define IOMEM_SEAL_GROW 0x0004u
#define IOMEM_SEAL_WRITE 0x0008u
#define IOMEM_SEAL_FUTURE_WRITE 0x0010u

/* iomem_create() flags */
#define IOMEM_CREATE_EXCLUSIVE 0x0001u /* fail with -EEXIST if the name exists */
#define IOMEM_CREATE_LEASE 0x0002u     /* delete the name when this connection closes */
#define IOMEM_CREATE_RESIZABLE 0x0004u /* allow resizing later (memfd: no F_SEAL_SHRINK, F_SEAL_GROW) */
/*
 * Huge pages: hugetlb pages if the system's pool has them and the size is a
 * multiple of the page size (taken from the pool at once), else transparent
 * huge pages where the system gives them to shared memory, else normal
 * pages. The region's flags say which (IOMEM_REGION_HUGETLB/THP). A mapping
 * of a HUGETLB region must start and end on that page size.
 */
#define IOMEM_CREATE_HUGE 0x0008u
/*
 * Reserve: allocate all the memory now, so that no write can fail later for lack of it (-ENOSPC/-ENOMEM now).
 * Named regions only (-EINVAL for an anonymous one: fallocate its fd yourself); an anonymous region with
 * IOMEM_CREATE_HUGE never gets hugetlb pages (they would be taken from the pool for no uid to be charged).
 */
#define IOMEM_CREATE_RESERVE 0x0010u
/* with IOMEM_CREATE_HUGE: the hugetlb page size (default: the system's) */
#define IOMEM_CREATE_HUGE_2MB (21u << 26)
#define IOMEM_CREATE_HUGE_1GB (30u << 26)

/* iomem_register() flags */
#define IOMEM_REGISTER_LEASE 0x0001u /* delete the name when this connection closes */

/* seals a memfd must carry to be registered (both bits set; others allowed) */
#define IOMEM_REGISTER_SEALS (IOMEM_SEAL_SHRINK | IOMEM_SEAL_GROW)

/* iomem_chown(): leave this id as it is */
#define IOMEM_ID_UNCHANGED 0xFFFFFFFFu

/* iomem_open() flags */
#define IOMEM_OPEN_RDONLY 0x0001u

/* iomem_region_flags() bits */
#define IOMEM_REGION_RDONLY 0x0001u
#define IOMEM_REGION_LEASED 0x0002u
#define IOMEM_REGION_RESIZABLE 0x0004u
#define IOMEM_REGION_ANONYMOUS 0x0008u
/* set by iomem_create() with IOMEM_CREATE_HUGE or IOMEM_CREATE_RESERVE (the daemon's answer) */
#define IOMEM_REGION_HUGETLB 0x0010u  /* hugetlb pages */
#define IOMEM_REGION_THP 0x0020u      /* transparent huge pages where the kernel can (mappings ask for them) */
#define IOMEM_REGION_RESERVED 0x0040u /* all its memory was allocated at creation */

struct iomem_region;
struct iomem_client;

/* ---- local regions ------------------------------------------------------ */

/*
 * iomem_region_new_local() - make a memory object without a daemon.
 * @size: bytes (0 allowed).
 * @backend: IOMEM_BACKEND_AUTO picks memfd, then shm, then file.
 * @max_size: sizes above it fail with -EFBIG before anything is made; 0 = 64 GiB.
 * Return: 0; -EFBIG; -EINVAL (unknown backend); -ENOSPC, -ENOMEM, -EMFILE...
 */
int iomem_region_new_local(uint64_t size, enum iomem_backend backend, uint64_t max_size,
                           struct iomem_region **regionp);

/*
 * iomem_region_new_consume_fd() - wrap an fd (taken over, even on error)
 * received some other way, e.g. from a parent or over a socket. The size
 * is read with fstat and the backend detected.
 * Return: 0; -EBADF; -EINVAL if it is not a regular memory-like file.
 */
int iomem_region_new_consume_fd(int fd, struct iomem_region **regionp);

/* Close the fd and free. Mappings stay valid until unmapped. NULL-safe. Return: NULL. */
struct iomem_region *iomem_region_free(struct iomem_region *region);

/*
 * iomem_region_fd() - the region's fd. A region received from iomemd
 * (iomem_create(), iomem_open() and their asynchronous forms) is not
 * examined on receipt: the first call that uses it (iomem_region_fd(),
 * _dup_fd(), _size(), _refresh(), _map()) reads the fd with fstat first.
 * An fd that is not a regular file (only a faulty daemon sends one) is then
 * refused: those calls return -EINVAL (iomem_region_size() 0) and it is
 * never mapped; the size is the object's own, whatever the daemon announced
 * (a holder may have shrunk a RESIZABLE region meanwhile).
 * Return: the fd (borrowed: still owned by the region); -EINVAL.
 */
int iomem_region_fd(const struct iomem_region *region);
/* Return: a close-on-exec duplicate of the fd (caller owns it), or negative errno; -EINVAL as iomem_region_fd(). */
int iomem_region_dup_fd(const struct iomem_region *region);
/*
 * Return: the size known to the region: read with fstat (for a region from
 * iomemd, at its first use), updated by map, resize and refresh; 0 for an
 * fd that is not a regular file.
 */
uint64_t iomem_region_size(const struct iomem_region *region);
enum iomem_backend iomem_region_backend(const struct iomem_region *region);
/* Return: IOMEM_REGION_* bits. */
uint32_t iomem_region_flags(const struct iomem_region *region);
/* Return: the daemon's id for the region, 0 for local regions. */
uint64_t iomem_region_id(const struct iomem_region *region);
/* Return: 0 with the size re-read by fstat; -EINVAL for an fd that is not a regular file; negative errno. */
int iomem_region_refresh(struct iomem_region *region);

/*
 * iomem_region_map() - mmap(MAP_SHARED) a range of the region.
 * @offset: must be a multiple of the page size.
 * @length: 0 = from @offset to the end.
 * @prot: PROT_READ and/or PROT_WRITE; PROT_WRITE on a read-only region is -EACCES.
 * The size is checked with fstat first, at every map: a range past the end
 * (also after another holder shrank the object) fails with -ERANGE instead
 * of a later SIGBUS. Mapping 0 bytes gives -EINVAL.
 * Return: 0 with *addrp set; -EINVAL (alignment, zero length, an fd that is
 * not a regular file); -EOVERFLOW
 * (offset + length wraps); -ERANGE; -EACCES; negative errno from mmap.
 */
int iomem_region_map(struct iomem_region *region, uint64_t offset, size_t length, int prot, void **addrp);

/* Return: 0 or negative errno from munmap. */
int iomem_unmap(void *addr, size_t length);

/*
 * iomem_region_resize() - change a local region's size.
 * Return: 0; -EFBIG; -EPERM if sealed against it.
 */
int iomem_region_resize(struct iomem_region *region, uint64_t size);

/*
 * iomem_region_seal() - add seals to a local memfd region.
 * Return: 0; -EOPNOTSUPP for shm/file; -EBUSY (F_SEAL_WRITE while mapped
 * writable); -EPERM (already sealed with F_SEAL_SEAL).
 */
int iomem_region_seal(struct iomem_region *region, uint32_t seals);

/* Return: seals in force (>= 0, 0 for shm/file), or negative errno. */
int iomem_region_get_seals(const struct iomem_region *region);

/* Return: "memfd", "shm", "file", "auto", or NULL for an unknown value. */
const char *iomem_backend_name(enum iomem_backend backend);

/* ---- the daemon --------------------------------------------------------- */

/*
 * iomem_socket_path() - the default socket, for every uid: $IOMEM_SOCKET if
 * set; else $XDG_RUNTIME_DIR/iomemd.sock if a socket exists there (a
 * per-user daemon, e.g. `systemctl --user start iomemd.socket`); else the
 * system service's /run/iomemd/iomemd.sock.
 * Return: the length written (without NUL); -ENAMETOOLONG; -EINVAL.
 */
int iomem_socket_path(char *buf, size_t size);

/*
 * iomem_connect() - connect to iomemd. The HELLO handshake is held back and
 * sent with the first request, in the same sendmsg(), and the daemon answers
 * both together (docs/protocol.md, sections 5 and 6): a cold connection
 * costs one round trip. So a refusal by the daemon (-EACCES by its
 * allow-list, -EDQUOT at the connection quota, -EPROTONOSUPPORT) is
 * returned by the first call (or by iomem_client_handshake(), to ask for it
 * now), with iomem_client_error_message() saying why; the connection is
 * closed after it and later calls return -ENOTCONN. A connection the daemon
 * closed before the HELLO could be sent (it had stayed silent past the
 * daemon's handshake timeout, 10 s by default, or the daemon exited) has had
 * nothing applied: the first call then connects once more and sends its
 * request again (a connection that ends after HELLO went out and before its
 * answer is -ECONNRESET, outcome unknown, as after any restart), within the
 * reconnect window (iomem_client_set_reconnect(); one
 * attempt if reconnecting is off), not counted as a reconnect; if no daemon
 * answers, it returns -ENOTCONN with the reason in
 * iomem_client_error_message(). With asynchronous calls, the first
 * iomem_client_get_events() sends the HELLO at once instead (an idle loop
 * is then not closed by the handshake timeout).
 * @path: socket path, or NULL for iomem_socket_path() (resolved once: a
 *        reconnect goes to the same path).
 * Return: 0; -ENOENT (no socket at the path) or -ECONNREFUSED (a socket
 * nobody listens on): no daemon, start it (iomemd.socket); -EACCES if the
 * socket's permissions refuse this uid; -ENAMETOOLONG; negative errno.
 */
int iomem_connect(const char *path, struct iomem_client **clientp);

/*
 * iomem_client_handshake() - send the HELLO that iomem_connect() held back,
 * if no request has taken it along yet, and wait for its answer: for a
 * program that wants a refusal reported at connect time (iomemctl does).
 * 0 at once if the handshake is done; -ENOTCONN once the connection broke.
 * Return: 0; -EPROTONOSUPPORT if no common protocol version; -EACCES if the
 * daemon's allow-list refuses this uid; -EDQUOT if the uid is at its
 * connection quota; -ETIMEDOUT (iomem_client_set_timeout()); negative errno.
 */
int iomem_client_handshake(struct iomem_client *client);

/*
 * Close the connection (leased regions go away). NULL-safe. Fork: a child
 * may disconnect its copy of its parent's client (any other call there
 * would share the socket, and the replies, with the parent: the calls that
 * would use the socket return -ECHILD there, unless the pthread_atfork()
 * registration of the first connect failed): that closes
 * the child's fd only, and the parent's connection,
 * calls in flight there included, goes on (before, a child whose parent had
 * a thread reading the client at the fork shut the shared socket down).
 * From a callback of iomem_client_process() (a completion or the event
 * callback, also of a nested iomem_client_process()), of iomem_list() or of
 * iomem_metrics() it is allowed: no further callback runs, the outstanding
 * requests are dropped without theirs, and the client is freed when the
 * outermost of those calls returns, which then returns -ESHUTDOWN (the
 * client is gone: do not use it, nor after the callback's own disconnect).
 * A callback must return: one that leaves by longjmp() (or a C++ or Ruby
 * exception) leaves the client's calls counted as running, and a later
 * disconnect of that client is deferred for ever (a leak). In a forked child, a disconnect of
 * the copy is deferred only from a callback the child itself runs (one that
 * forked there): threads of the parent in a callback at the fork are not in
 * the child, so the copy is freed at once. Not from another thread while a
 * call runs.
 * Return: NULL.
 */
struct iomem_client *iomem_disconnect(struct iomem_client *client);

/*
 * Return: the connection's socket fd (borrowed), e.g. to poll it; it
 * changes when the client reconnects; -ENOTCONN while not connected.
 */
int iomem_client_fd(const struct iomem_client *client);

/*
 * iomem_client_error_message() - the daemon's detail for the last call's
 * error reply (e.g. "name exists"), for logs and people: its wording is not
 * part of the protocol. "" when the last call succeeded or failed without
 * an error reply from the daemon (timeout, transport, argument checks),
 * except for a daemon that went away and did not come back (-ENOTCONN):
 * then it says so, with the socket path and the connect error.
 * Valid until the next call on @client.
 * Return: a string owned by @client, never NULL.
 */
const char *iomem_client_error_message(const struct iomem_client *client);

/*
 * Per-call timeout for replies, in milliseconds (-1 = wait forever, the
 * default; any negative value is -1). 0 does not wait at all: a call whose
 * reply is not already on the socket times out, so use a small positive
 * value instead. An OPEN that waits for a name adds its own timeout to this.
 * A call that times out returns -ETIMEDOUT and breaks the connection:
 * later calls return -ENOTCONN.
 */
void iomem_client_set_timeout(struct iomem_client *client, int timeout_ms);

/*
 * Asked by a blocking call whose wait for a reply, or for room to send its
 * request (or, in iomem_next_event(), for an event) a signal interrupted: non-zero to give up the wait. Called in
 * the calling thread, without the client's lock, but while that call is still
 * the one reading @client's socket: it must not call into @client (such a call
 * would wait for the interrupted one to stop reading, for ever); calls on
 * other clients are fine.
 */
typedef int (*iomem_interrupt_cb)(struct iomem_client *client, void *userdata);

/*
 * iomem_client_set_interrupt_cb() - let signals end a blocking call's wait,
 * for language bindings whose signal handlers may raise (Python's Ctrl-C,
 * Ruby's Thread#raise). Without it (the default) libiomem retries EINTR and
 * a call waits for its reply however many signals come. With it, a call
 * waits in poll() (which a signal always interrupts, SA_RESTART or not) and
 * asks @cb after each signal; when @cb returns non-zero the call returns
 * -EINTR at once. The request may already have been applied (outcome
 * unknown, as after -ECONNRESET): its reply is dropped when it arrives (a
 * region's fd closed), so the connection stays in step and usable, and its
 * leases and watches stay. An interrupted iomem_watch() leaves no watch: if
 * the daemon made it, libiomem UNWATCHes it when the dropped reply arrives
 * (at a later call that reads the socket; that UNWATCH goes out behind the
 * requests already sent and its reply is dropped too), and its events are
 * never delivered. A wait to send (a socket buffer full: a daemon that does
 * not read) ends the same way: if nothing of the request went out, it is
 * taken back and never sent (not applied); if part went (a frame cannot be
 * left half-written), or another thread queued a request behind it while
 * the callback ran, it stays queued, goes out before any later request, and
 * its reply is dropped (outcome unknown). If meanwhile another thread sent
 * it and read its reply, a callback that says to go on gets the call that
 * reply. The HELLO's wait is not ended (connect,
 * iomem_client_handshake(), a reconnect), nor a wait for another thread
 * that reads the socket. A signal that comes just before the call starts to
 * wait is seen only at the next signal (as with any poll()): a binding
 * whose handlers must not be missed sends again.
 * @cb: NULL to retry EINTR again.
 */
void iomem_client_set_interrupt_cb(struct iomem_client *client, iomem_interrupt_cb cb, void *userdata);

/* how long a call may spend connecting again after the daemon went away, by default */
#define IOMEM_RECONNECT_DEFAULT_MS 15000

/*
 * iomem_client_set_reconnect() - reconnecting after the daemon went away
 * (see "Restarts" above).
 * @max_wait_ms: 0 = never: a connection the daemon closed stays closed,
 *               calls return -EPIPE (not sent) or -ECONNRESET (sent, no
 *               reply) and then -ENOTCONN, as in libiomem 0.1;
 *               > 0 = retry connecting for up to that long per call
 *               (counted from the call's first reconnect, however often the
 *               daemon goes away during the call), with
 *               backoff from 10 ms to 500 ms (capped by the reply timeout
 *               if one is set); -1 = without limit.
 * Default: IOMEM_RECONNECT_DEFAULT_MS.
 */
void iomem_client_set_reconnect(struct iomem_client *client, int max_wait_ms);

/* Return: how many times this client connected again after losing its daemon. */
unsigned iomem_client_reconnects(const struct iomem_client *client);

struct iomem_create_opts {
        uint32_t flags;  /* IOMEM_CREATE_* */
        uint32_t seals;  /* initial seals (memfd only) */
        uint32_t mode;   /* 0 = daemon default */
        enum iomem_backend backend; /* AUTO = daemon default */
};

/*
 * iomem_create() - create a region in the daemon.
 * @name: NULL or "" for an anonymous region (only the returned fd refers to it).
 * @opts: NULL for defaults. With IOMEM_CREATE_HUGE or IOMEM_CREATE_RESERVE
 *        in opts->flags, iomem_region_flags() says what the daemon made
 *        (IOMEM_REGION_HUGETLB, IOMEM_REGION_THP, IOMEM_REGION_RESERVED); not
 *        getting huge pages is not an error. A daemon older than these flags
 *        answers -EINVAL.
 * The region's fd is examined at its first use (see iomem_region_fd()).
 * Return: 0 with *regionp (read-write); -EEXIST (exclusive); -EINVAL (bad
 * name, flags, mode, seals or backend: iomem_client_error_message() says
 * which value, and what is allowed (so do OPEN, SEAL, CHMOD, REGISTER and
 * PUBLISH), but for a bad name, "malformed CREATE":
 * see iomem_name_check()); -EFBIG (size limit); -EDQUOT; -ENOSPC (file
 * system full; with IOMEM_CREATE_RESERVE, also the hugetlb pool or file
 * system could not hold the reservation); -ENOMEM (with
 * IOMEM_CREATE_RESERVE: the daemon's memory cgroup is full); -EBUSY (a
 * CREATE with IOMEM_CREATE_RESERVE of this name is in progress on another
 * connection: try again, or iomem_open() with a wait); ...
 * With IOMEM_CREATE_RESERVE the reply comes once all the memory is allocated
 * (about 0.1-0.5 s per GiB); other calls on the same client wait behind it.
 */
int iomem_create(struct iomem_client *client, const char *name, uint64_t size,
                 const struct iomem_create_opts *opts, struct iomem_region **regionp);

/*
 * iomem_open() - open a named region.
 * @flags: IOMEM_OPEN_RDONLY for a read-only fd.
 * @wait_ms: 0 = fail at once with -ENOENT if the name does not exist;
 *           > 0 = wait up to that long for it to be created (-ETIMEDOUT);
 *           -1 = wait without limit.
 * The region's fd is examined at its first use, not here (see
 * iomem_region_fd()): an OPEN costs no syscall beyond its round trip.
 * Return: 0 with *regionp; -ENOENT; -ETIMEDOUT; -EACCES without read
 * (RDONLY) or write permission; -EDQUOT if too many fds are queued towards
 * this uid; -EAGAIN (RDONLY) if the registrant of the region holds a lease
 * on its inode; ...
 */
int iomem_open(struct iomem_client *client, const char *name, uint32_t flags, int wait_ms,
               struct iomem_region **regionp);

struct iomem_stat {
        uint64_t id;
        uint64_t size;
        uint64_t ctime_ns;   /* creation, CLOCK_REALTIME */
        uint64_t open_count; /* times opened */
        uint32_t seals;
        uint32_t flags;      /* IOMEM_REGION_* */
        uint32_t uid;
        uint32_t gid;
        uint32_t mode;
        enum iomem_backend backend;
};

/* Return: 0; -ENOENT; -EINVAL; -EACCES without read permission. */
int iomem_stat(struct iomem_client *client, const char *name, struct iomem_stat *st);

struct iomem_list_entry {
        uint64_t id;
        uint64_t size;
        uint32_t seals;
        uint32_t mode;
        uint32_t uid;
        uint32_t gid;
        const char *name; /* valid during the callback only */
};

/*
 * iomem_list() - call @cb for every named region whose name starts with
 * @prefix (NULL or "" = all), fetching page after page. A non-zero return
 * from @cb stops the walk and is returned.
 * Return: 0; the callback's value; -ESHUTDOWN if @cb called
 * iomem_disconnect() (the walk stops; the client is freed: forget it);
 * negative errno.
 */
int iomem_list(struct iomem_client *client, const char *prefix,
               int (*cb)(const struct iomem_list_entry *e, void *userdata), void *userdata);

/*
 * iomem_resize() - change a region's size. Growing a region created with
 * IOMEM_CREATE_RESERVE allocates the new bytes first (the reply waits for
 * them; other calls on the same client wait behind it).
 * Return: 0; -ENOENT; -EPERM if seals forbid it, or if it would shrink a
 * region created without IOMEM_CREATE_RESIZABLE (judged on its size when the
 * daemon resizes it: another holder may have grown it meanwhile); -EFBIG;
 * -EACCES unless owner or root; -EDQUOT; -EBUSY (another RESIZE or an
 * iomem_seal() of this region is in progress, or a holder changed the size
 * of this RESERVEd region meanwhile: try again); -ENOSPC/-ENOMEM (the growth
 * of a RESERVEd region cannot be allocated). The daemon makes one uid's
 * resizes and seals one at a time: another of the same uid (another region,
 * another client) waits for its turn; it is not refused.
 */
int iomem_resize(struct iomem_client *client, const char *name, uint64_t size);

/*
 * Return: 0 with *sealsp (may be NULL) = seals now; -EOPNOTSUPP (not memfd);
 * -EBUSY (a writable mapping and IOMEM_SEAL_WRITE; or an iomem_resize() or
 * another iomem_seal() of this region is in progress: try again);
 * -EPERM; -EACCES unless owner or root.
 */
int iomem_seal(struct iomem_client *client, const char *name, uint32_t seals, uint32_t *sealsp);

/* Remove the name; fds and mappings already handed out stay valid. Return: 0; -ENOENT; -EACCES unless owner or root. */
int iomem_delete(struct iomem_client *client, const char *name);

/* Return: 0 after a round trip. */
int iomem_ping(struct iomem_client *client);

struct iomem_status {
        uint64_t regions;
        uint64_t bytes;
        uint64_t connections;
        uint64_t uptime_sec;
        enum iomem_backend backend;
        char server_version[65];
};

/* Return: 0; negative errno. */
int iomem_status(struct iomem_client *client, struct iomem_status *st);

/* ---- metrics ------------------------------------------------------------ */

enum iomem_metric_type {
        IOMEM_METRIC_GAUGE = 1,
        IOMEM_METRIC_COUNTER = 2, /* OpenMetrics samples of a counter are named name + "_total" */
};

/* What a metric's label is; each metric has at most one. */
enum iomem_metric_label {
        IOMEM_METRIC_LABEL_NONE = 0,
        IOMEM_METRIC_LABEL_REQUEST = 1, /* "request": a request name such as "OPEN" ("other" for unknown opcodes) */
        IOMEM_METRIC_LABEL_CODE = 2,    /* "code": an errno name such as "EDQUOT" ("other" above the counted range) */
        IOMEM_METRIC_LABEL_UID = 3,     /* "uid": a uid in decimal */
};

/* One sample of the daemon's metrics (docs/metrics.md lists them). */
struct iomem_metric {
        uint16_t id;    /* the wire id (docs/protocol.md, METRICS) */
        const char *name; /* OpenMetrics family name, without "_total"; NULL for an id this library does not
                           * know (a newer daemon): skip such samples */
        const char *help;
        enum iomem_metric_type type;
        enum iomem_metric_label label_kind;
        const char *label_name;  /* "request", "code", "uid", or NULL */
        uint32_t label;          /* raw label: an opcode, an errno (positive) or a uid; 0 without a label */
        char label_value[32];    /* the label as text ("OPEN", "EDQUOT", "1000"), "" without a label */
        uint64_t value;
};

#define IOMEM_METRICS_TRUNCATED 0x0001u /* the daemon left samples out: its reply was full */

/*
 * iomem_metrics() - fetch the daemon's counters and gauges in one request and
 * call @cb for each sample, daemon-wide ones first, then per uid: root gets
 * every uid that holds something or was refused, any other caller only its
 * own. A non-zero return from @cb stops the walk and is returned.
 * @flagsp: if not NULL, receives IOMEM_METRICS_* flags.
 * Return: 0; the callback's value; -ESHUTDOWN if @cb called
 * iomem_disconnect() (as for iomem_list()); -EOPNOTSUPP from a daemon without
 * METRICS; -EPROTO for a malformed reply; negative errno.
 */
int iomem_metrics(struct iomem_client *client, uint32_t *flagsp,
                  int (*cb)(const struct iomem_metric *m, void *userdata), void *userdata);

/* ---- access control, quotas, registering -------------------------------- */

/*
 * iomem_chmod() - set a region's mode (0..0777; owner/group/other, read 4,
 * write 2). Fds already handed out keep the access they were given.
 * Return: 0; -ENOENT; -EINVAL (mode above 0777, bad name); -EACCES unless
 * the caller owns the region or is root; -ENOSPC if the daemon could not
 * record the mode in the service manager's fd store (nothing changed; not
 * for the mode the region already has, which needs no record, unless an
 * earlier record of the region failed to be written).
 */
int iomem_chmod(struct iomem_client *client, const char *name, uint32_t mode);

/*
 * iomem_chown() - set a region's owner and/or group (IOMEM_ID_UNCHANGED
 * keeps one). Only root may change the owner (the new owner's quota is
 * charged); the owner may change the group to one it is a member of.
 * Return: 0; -ENOENT; -EINVAL; -EACCES; -ENOSPC as iomem_chmod().
 */
int iomem_chown(struct iomem_client *client, const char *name, uint32_t uid, uint32_t gid);

/* The caller's usage and limits (0 = unlimited), as the daemon counts them for its uid. */
struct iomem_quota {
        uint32_t uid;
        uint32_t gid;
        uint64_t bytes, max_bytes;             /* bytes of named regions owned */
        uint64_t regions, max_regions;         /* named regions owned */
        uint64_t connections, max_connections; /* connections open */
        uint64_t fds, max_fds;                 /* fds queued towards the uid, not yet received; max never 0 */
        uint64_t max_region_size;              /* the daemon's size limit (-EFBIG above it) */
};

/* Return: 0 with *q filled; negative errno. */
int iomem_quota(struct iomem_client *client, struct iomem_quota *q);

/*
 * iomem_register() - publish a memfd made by the caller under @name: the
 * daemon keeps a copy of its fd and hands out copies to OPEN as for CREATE.
 * The memory stays charged to whoever allocates its pages (typically the
 * caller's memory cgroup), not to the daemon's. Requirements, checked by
 * the daemon: a memfd (not a file, socket, pipe, directory, device or
 * O_PATH fd) open read-write, of exactly the size the region reports
 * (iomem_region_refresh() is called first), sealed with at least
 * IOMEM_REGISTER_SEALS, and whose inode mode gives group and other no
 * write (unless sealed with F_SEAL_WRITE or F_SEAL_FUTURE_WRITE) and no
 * execute permission: iomem_region_new_local() memfds are 0600 already.
 * The region stays the caller's (the fd is copied).
 * @flags: IOMEM_REGISTER_LEASE or 0. @mode: 0 = the daemon's default.
 * Return: 0 with *idp (may be NULL) = the region id; -EEXIST; -EINVAL
 * (not a memfd, wrong size, read-only fd, bad name or flags); -EPERM
 * (missing seals, inode mode too open); -EACCES (the daemon cannot reopen
 * it read-only); -EAGAIN (the inode is under a lease); -EFBIG; -EDQUOT.
 */
int iomem_register(struct iomem_client *client, const char *name, const struct iomem_region *region,
                   uint32_t flags, uint32_t mode, uint64_t *idp);

/* ---- events, publishing, versions (docs/protocol.md section 15) ---------- */

/*
 * Watching and publishing need a connection made with IOMEM_CONNECT_EVENTS;
 * on others these calls fail with -EOPNOTSUPP. A daemon too old for the
 * feature refuses such a connection with -EINVAL: connect again without it.
 *
 * Generations: every named region has a generation, a number >= 1 that
 * grows each time a new version is published under the name (also across
 * DELETE and a new CREATE of it). Compare generations; do not count them.
 *
 * Events arrive on the connection's socket. The blocking calls keep events
 * that come while they wait for their reply; iomem_next_event() returns them
 * first, in order, then reads the socket. Before sleeping in poll() on
 * iomem_client_fd(), take every event with iomem_next_event(c, &ev, 0) until
 * it returns -EAGAIN: events kept by an earlier call do not wake poll().
 *
 * Watches end with a connection. When libiomem connects again after the
 * daemon went away (iomem_client_set_reconnect()), from any call including
 * iomem_next_event(), it makes the client's watches again, keeping the ids
 * iomem_watch() returned, and iomem_next_event() then returns one OVERFLOW
 * first: changes made while no connection existed were missed, re-read the
 * state (iomem_list()) as after any OVERFLOW.
 */

/* iomem_connect_flags() flags */
#define IOMEM_CONNECT_EVENTS 0x0001u /* ask for watching, events, publishing and versions */

/*
 * iomem_connect_flags() - iomem_connect() with @flags (IOMEM_CONNECT_*).
 * Unlike iomem_connect(), it sends HELLO at once and waits for its answer,
 * so that a refusal comes from here.
 * Return: as iomem_connect(); -EINVAL for unknown flags, or from a daemon
 * that does not know IOMEM_CONNECT_EVENTS; -EACCES, -EDQUOT,
 * -EPROTONOSUPPORT as iomem_client_handshake().
 */
int iomem_connect_flags(const char *path, uint32_t flags, struct iomem_client **clientp);

/*
 * iomem_connect_timeout() - iomem_connect_flags() that waits at most
 * @timeout_ms for the daemon (-1 = forever, as iomem_connect()), and sets
 * that as the reply timeout (iomem_client_set_timeout()). A stopped or hung
 * daemon, or a socket whose service is still starting, otherwise keeps
 * iomem_connect() waiting for the HELLO reply without end.
 * Return: as iomem_connect_flags(); -ETIMEDOUT if the daemon did not answer
 * in time; -EAGAIN if the socket's listen backlog is full.
 */
int iomem_connect_timeout(const char *path, uint32_t flags, int timeout_ms, struct iomem_client **clientp);

/* iomem_event.kind: the event opcodes of the protocol */
enum iomem_event_kind {
        IOMEM_EVENT_OVERFLOW = 0x0301,  /* events were dropped: re-read the state (iomem_list) */
        IOMEM_EVENT_CREATED = 0x0302,
        IOMEM_EVENT_DELETED = 0x0303,
        IOMEM_EVENT_RESIZED = 0x0304,
        IOMEM_EVENT_SEALED = 0x0305,
        IOMEM_EVENT_CHMOD = 0x0306,
        IOMEM_EVENT_CHOWN = 0x0307,
        IOMEM_EVENT_PUBLISHED = 0x0308, /* a new version (id, generation) replaced replaced_id */
};

struct iomem_event {
        uint32_t kind;        /* enum iomem_event_kind */
        uint32_t watch_id;    /* the watch that matched; 0 for OVERFLOW */
        uint64_t id;          /* the region (PUBLISHED: the new version) */
        uint64_t generation;
        uint64_t size;        /* after the change */
        uint64_t replaced_id; /* PUBLISHED: the version replaced */
        uint64_t dropped;     /* OVERFLOW: events lost */
        uint32_t seals;
        uint32_t mode;
        uint32_t uid;
        uint32_t gid;
        char name[256];       /* "" for OVERFLOW */
};

/*
 * iomem_watch() - get events for the regions whose name starts with @prefix
 * (NULL or "" = all) and that this uid may read. Every change made after
 * the call returns is reported (or covered by an OVERFLOW).
 * Return: 0 with *watch_idp (may be NULL); -EDQUOT (watches per uid);
 * -EINVAL; -EOPNOTSUPP without IOMEM_CONNECT_EVENTS.
 */
int iomem_watch(struct iomem_client *client, const char *prefix, uint32_t *watch_idp);

/* Stop a watch: no event of it comes after this returns. Return: 0; -ENOENT; -EOPNOTSUPP. */
int iomem_unwatch(struct iomem_client *client, uint32_t watch_id);

/*
 * iomem_next_event() - the next event, waiting up to @timeout_ms (0 = do not
 * wait, -1 = forever). Replies to requests of other threads, or to
 * asynchronous requests, read meanwhile go to their callers. With an event
 * callback set (iomem_client_set_event_cb()) iomem_client_process() delivers
 * events to it; iomem_next_event() still takes the next event not yet
 * delivered, if called.
 * Return: 0 with *ev; -EAGAIN if none came in time (the connection stays
 * usable); -EOPNOTSUPP without IOMEM_CONNECT_EVENTS; -ENOTCONN; negative errno.
 */
int iomem_next_event(struct iomem_client *client, struct iomem_event *ev, int timeout_ms);

/* iomem_publish_opts.flags */
#define IOMEM_PUBLISH_LEASE 0x0001u /* delete the new version when this connection closes */

struct iomem_publish_opts {
        uint32_t flags;             /* IOMEM_PUBLISH_* */
        uint32_t mode;              /* 0 = the replaced version's (daemon default for a new name) */
        uint64_t expect_generation; /* 0 = replace whatever is there; else -ESTALE unless current */
};

/*
 * iomem_publish() - make @region (a memfd of the caller's, as for
 * iomem_register(): sealed SHRINK and GROW, and WRITE for an immutable
 * snapshot) the version of @name that OPEN returns from now on, in one
 * step. Holders of the old version keep it. The caller must own the
 * region it replaces (or be root); the new version keeps its owner and
 * group. Quotas must have room for both versions while they switch.
 * @opts: NULL for defaults.
 * Return: 0 with *generationp (may be NULL); -ESTALE; -ENOENT (expected a
 * version, none exists); -EACCES; -EINVAL; -EPERM; -EDQUOT; -EFBIG; -EOPNOTSUPP.
 */
int iomem_publish(struct iomem_client *client, const char *name, const struct iomem_region *region,
                  const struct iomem_publish_opts *opts, uint64_t *generationp);

/*
 * iomem_open_version() - iomem_open() of a version newer than
 * @after_generation (0 = any): the way to wait for "the next version" without
 * polling. @wait_ms as iomem_open(): 0 = -ENOENT at once if there is none.
 * Return: 0 with *regionp and *generationp (may be NULL); as iomem_open().
 */
int iomem_open_version(struct iomem_client *client, const char *name, uint32_t flags, uint64_t after_generation,
                       int wait_ms, struct iomem_region **regionp, uint64_t *generationp);

/* iomem_stat() with the region's generation. Return: as iomem_stat(); -EOPNOTSUPP. */
int iomem_stat_version(struct iomem_client *client, const char *name, struct iomem_stat *st,
                       uint64_t *generationp);

/* ---- the asynchronous client (docs/async.md) ----------------------------- */

/*
 * A client plugs into any event loop (libevent, sd-event, glib, epoll), as
 * sd-bus and libwayland-client do: watch iomem_client_fd() for
 * iomem_client_get_events(), wake up after iomem_client_get_timeout(), and
 * call iomem_client_process() when either happens. Requests made with the
 * *_async() calls complete through their callback, called from
 * iomem_client_process() only (never from the *_async() call itself);
 * events go to the callback set by iomem_client_set_event_cb().
 *
 * Blocking and asynchronous calls share one implementation and may be
 * mixed on one client: a blocking call (iomem_watch(), iomem_create()...)
 * sends its request and reads the socket until its own reply has come;
 * replies to asynchronous requests and events read meanwhile are kept and
 * delivered by the next iomem_client_process(), and iomem_client_get_timeout()
 * returns 0 while something is kept (they do not wake poll()). A blocking
 * call may be made from a callback.
 *
 * Timeouts: an asynchronous request waits for its reply at most
 * iomem_client_set_timeout()'s time (plus a waiting OPEN's own @wait_ms);
 * when that passes, iomem_client_process() completes it with -ETIMEDOUT and
 * the connection is broken, as for a blocking call.
 *
 * Daemon restarts: iomem_client_process() never connects again (it would
 * block the loop). When the connection ends, every outstanding asynchronous
 * request completes with -ECONNRESET (sent, outcome unknown: an OPEN, STAT
 * or PING may be sent again), -EPIPE (the daemon had closed it before the
 * HELLO held back for the first request could go: nothing was applied) or -ENOTCONN,
 * or with the daemon's refusal of that HELLO (-EACCES...); iomem_client_process() returns
 * -ENOTCONN, and *_async() calls fail with -ENOTCONN at once. To go on,
 * call a blocking function (iomem_ping() will do): it connects again within
 * iomem_client_set_reconnect()'s window and makes the watches again (an
 * OVERFLOW event comes first); then take iomem_client_fd() anew, it has
 * changed. Or iomem_disconnect() and connect.
 *
 * Threads: the asynchronous calls lock the client like every other call,
 * but callbacks run in the thread that calls iomem_client_process(): use
 * one thread for the loop, or see "Threads" at the top.
 */

/* Called for each event (see iomem_next_event()) by iomem_client_process(). */
typedef void (*iomem_event_cb)(struct iomem_client *client, const struct iomem_event *ev, void *userdata);

/*
 * iomem_client_set_event_cb() - deliver events to @cb from
 * iomem_client_process() instead of keeping them for iomem_next_event().
 * @cb: NULL to keep them again.
 */
void iomem_client_set_event_cb(struct iomem_client *client, iomem_event_cb cb, void *userdata);

/*
 * iomem_client_get_events() - what to wait for on iomem_client_fd():
 * POLLIN, and POLLOUT while requests wait to be sent.
 * Return: poll(2) event bits (> 0); -ENOTCONN when broken; -EINVAL.
 */
int iomem_client_get_events(struct iomem_client *client);

/*
 * iomem_client_get_timeout() - when to call iomem_client_process() even if
 * the fd stays quiet, in milliseconds from now.
 * Return: -1 = no deadline; 0 = at once (callbacks are ready to run: replies
 * or events read by a blocking call; or the last iomem_client_process() left
 * input unread, its reads being bounded); > 0. A NULL client gives -1.
 * A > 0 may come before the first request's deadline, never after it (the
 * earliest is remembered as a bound and made exact once it has passed):
 * the loop then wakes, iomem_client_process() finds nothing due, and the
 * next call says what is left.
 */
int iomem_client_get_timeout(struct iomem_client *client);

/*
 * iomem_client_process() - without blocking: send what is queued, read what
 * the socket holds, complete requests whose reply came or whose time is up,
 * and call their callbacks and the event callback (events read in this call
 * first, then completions, each in the order they arrived).
 * Return: how many callbacks were called (>= 0); -ENOTCONN once the
 * connection is broken (after the callbacks of what it ended); -ESHUTDOWN
 * if a callback called iomem_disconnect() (the client is freed: forget it);
 * -EINVAL.
 */
int iomem_client_process(struct iomem_client *client);

/*
 * Completion of iomem_open_async() and iomem_open_version_async().
 * @error: 0, or the negative errno iomem_open() would return; during the
 *         callback iomem_client_error_message() is the daemon's detail for
 *         it, or "" if it did not come from the daemon (so in the stat and
 *         ping callbacks too).
 * @region: on success, the region, owned by the callee (free it with
 *          iomem_region_free()); NULL on error.
 * @generation: the version opened (iomem_open_version_async()), 0 for iomem_open_async().
 */
typedef void (*iomem_open_cb)(struct iomem_client *client, int error, struct iomem_region *region,
                              uint64_t generation, void *userdata);

/*
 * iomem_open_async() - iomem_open() that completes through @cb.
 * @wait_ms: as iomem_open() (the daemon waits, the caller does not).
 * Return: 0 (@cb will be called exactly once, unless the client is freed
 * first); -EINVAL; -ENOTCONN (broken connection, see "Daemon restarts"
 * above); -ENOMEM; then @cb is not called.
 */
int iomem_open_async(struct iomem_client *client, const char *name, uint32_t flags, int wait_ms,
                     iomem_open_cb cb, void *userdata);

/* iomem_open_version() that completes through @cb. Return: as iomem_open_async(). */
int iomem_open_version_async(struct iomem_client *client, const char *name, uint32_t flags,
                             uint64_t after_generation, int wait_ms, iomem_open_cb cb, void *userdata);

/* Completion of iomem_stat_async(): @st is valid during the call only, NULL on error. */
typedef void (*iomem_stat_cb)(struct iomem_client *client, int error, const struct iomem_stat *st,
                              void *userdata);

/* iomem_stat() that completes through @cb. Return: as iomem_open_async(). */
int iomem_stat_async(struct iomem_client *client, const char *name, iomem_stat_cb cb, void *userdata);

/* Completion of a request without a result (iomem_ping_async()). */
typedef void (*iomem_done_cb)(struct iomem_client *client, int error, void *userdata);

/* iomem_ping() that completes through @cb. Return: as iomem_open_async(). */
int iomem_ping_async(struct iomem_client *client, iomem_done_cb cb, void *userdata);

/* ---- cached opens -------------------------------------------------------- */

/*
 * iomem_client_set_open_cache() - answer a repeated iomem_open() of a name
 * that has not changed from a local duplicate of the fd it got before,
 * without a round trip to the daemon.
 * Needs a connection made with IOMEM_CONNECT_EVENTS: enabling makes a
 * watch of "" (every name this uid may read; it counts against the watch
 * quota and its events are not delivered to the caller), and the cache
 * drops a name on any event about it (DELETED, PUBLISHED, CHMOD, CHOWN,
 * RESIZED, SEALED...) and everything on an OVERFLOW or a reconnect. An
 * entry is keyed by name and IOMEM_OPEN_* flags; at most 64 names are kept
 * (oldest out), each holding one fd. Only the blocking iomem_open() uses
 * the cache (not iomem_open_async(), not iomem_open_version()).
 *
 * What it gives up: freshness up to the latency of an event. Before a hit,
 * the events already on the socket are read (without waiting), so a change
 * whose event has reached this process is never missed; but a change made
 * by another process whose event is still on its way can be missed: an
 * OPEN that races a DELETE (or a PUBLISH, a CHMOD) by another process may
 * still succeed from the cache with the old region. An iomem_ping() first
 * rules that out for changes completed before it (the daemon queues events
 * before later replies). What it does not give up: access. A hit hands out
 * a duplicate of an fd this process already holds, with the access it was
 * given then (read-only stays read-only), as any fd already held keeps
 * it. A CHMOD or CHOWN event drops the entry, so the next OPEN asks the
 * daemon again; but a CHMOD that takes this uid's read access away may not
 * be reported to it (watchers see only what they may read), and until the
 * entry goes for another reason a hit still hands out the fd held. The
 * daemon's open_count (iomem_stat()) does not count hits.
 * @enable: non-zero to enable, 0 to disable (drops the cache and its watch).
 * Return: 0; -EOPNOTSUPP without IOMEM_CONNECT_EVENTS; -EDQUOT (watch
 * quota); -ENOMEM; negative errno from iomem_watch().
 */
int iomem_client_set_open_cache(struct iomem_client *client, int enable);

/* Return: how many iomem_open() calls the cache answered. */
uint64_t iomem_client_open_cache_hits(const struct iomem_client *client);

/* Return: a static description of a negative errno (also iomemd-specific meanings). */
const char *iomem_strerror(int error);

/* The rule iomem_name_check() checks, in words for an error message (docs/protocol.md, section 8). */
#define IOMEM_NAME_RULE "1 to 255 bytes of A-Z a-z 0-9 . _ - / : @ + = , not starting with / or . and without //"

/*
 * iomem_name_check() - whether @name is a region name the daemon takes (IOMEM_NAME_RULE). The daemon judges:
 * libiomem sends any name up to 255 bytes, and refuses others with -EINVAL and the text "malformed CREATE" (or
 * OPEN...), which names neither the argument nor the rule; this tells a caller's user which one it was.
 * Return: 0 if valid; -EINVAL (also for NULL and the empty name, which only CREATE takes: anonymous).
 */
int iomem_name_check(const char *name);

/* Return: the seal bits for a comma- or space-separated list such as "shrink,grow", or -EINVAL. */
int iomem_seals_parse(const char *text, uint32_t *sealsp);

#ifdef __cplusplus
}
#endif
