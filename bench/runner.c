/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* runner: run one operation in a timed loop, in this process or in N forked clients started together. */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runner.h"

int runner_loop(runner_op_fn op, void *ctx, const struct runner_opts *o, struct stats *s, double *secondsp)
{
        uint64_t start, end, t, window = (uint64_t)(o->seconds * 1e9);
        int r;

        for (uint64_t i = 0; i < o->warmup; i++) {
                r = op(ctx);
                if (r < 0)
                        return r;
        }
        start = t = stats_now_ns();
        end = start + window;
        while (t < end && (o->max_ops == 0 || s->ops < o->max_ops)) {
                uint64_t t1;

                r = op(ctx);
                if (r < 0)
                        return r;
                t1 = stats_now_ns();
                stats_add(s, t1 - t);
                t = t1;
        }
        *secondsp = (double)(t - start) / 1e9;
        return 0;
}

/* Per-client slot in the shared page the parent reads after the run. */
struct runner_slot {
        uint64_t ops;
        uint64_t n;
        uint64_t last_ns; /* when the last counted op ended */
        int error;
};

struct runner_shared {
        uint64_t deadline_ns;
        uint64_t start_ns;
};

static int runner_read_full(int fd, void *buf, size_t len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t k = read(fd, (char *)buf + done, len - done);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                done += (size_t)k;
        }
        return 0;
}

/* The body of one forked client. Return: exit status. */
static int runner_child(int index, const struct runner_client *rc, struct runner_shared *sh,
                        struct runner_slot *slot, uint64_t *samples, size_t cap, int ready_fd, int go_fd)
{
        void *ctx = NULL;
        uint64_t t, end;
        char b = 1;
        int r;

        r = rc->setup(index, rc->arg, &ctx);
        if (r < 0) {
                slot->error = r;
                b = 0;
        }
        if (write(ready_fd, &b, 1) != 1 || r < 0)
                return 1;
        close(ready_fd);
        /* the parent closes its end of the go pipe to start everyone at once */
        if (read(go_fd, &b, 1) != 0)
                return 1;
        end = sh->deadline_ns;
        t = stats_now_ns();
        /*
         * Each client counts at least its first op, even one that starts or ends past the window: with hundreds
         * of clients on a loaded machine (or under a sanitizer) the first round trip can outlast a short window,
         * and a run that counted nothing would measure nothing. The parent stretches the window to the last
         * counted op instead.
         */
        while (t < end || slot->ops == 0) {
                uint64_t t1;

                r = rc->op(ctx);
                if (r < 0) {
                        slot->error = r;
                        break;
                }
                t1 = stats_now_ns();
                if (t1 > end && slot->ops > 0)
                        break;
                if (slot->n < cap)
                        samples[slot->n++] = t1 - t;
                slot->ops++;
                slot->last_ns = t1;
                t = t1;
        }
        if (rc->teardown)
                rc->teardown(ctx);
        return slot->error ? 1 : 0;
}

int runner_clients(int n, const struct runner_client *rc, const struct runner_opts *o, struct stats *s,
                   double *secondsp)
{
        size_t cap = s->cap / (size_t)n, shared_len;
        int ready[2] = { -1, -1 }, go[2] = { -1, -1 };
        struct runner_shared *sh;
        struct runner_slot *slots;
        uint64_t *samples;
        pid_t *pids;
        int r = 0, started = 0;
        void *mem;

        shared_len = sizeof(*sh) + (size_t)n * sizeof(*slots) + 16 + (size_t)n * cap * sizeof(uint64_t);
        mem = mmap(NULL, shared_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                return -errno;
        pids = calloc((size_t)n, sizeof(*pids));
        if (!pids) {
                munmap(mem, shared_len);
                return -ENOMEM;
        }
        sh = mem;
        slots = (struct runner_slot *)(sh + 1);
        samples = (uint64_t *)(((uintptr_t)(slots + n) + 15) & ~(uintptr_t)15);

        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) {
                r = -errno;
                goto out;
        }
        for (int i = 0; i < n; i++) {
                pid_t pid = fork();

                if (pid < 0) {
                        r = -errno;
                        break;
                }
                if (pid == 0) {
                        close(ready[0]);
                        close(go[1]);
                        _exit(runner_child(i, rc, sh, &slots[i], samples + (size_t)i * cap, cap, ready[1],
                                           go[0]));
                }
                pids[started++] = pid;
        }
        close(ready[1]);
        ready[1] = -1;
        for (int i = 0; i < started && r == 0; i++) {
                char b;

                r = runner_read_full(ready[0], &b, 1);
                if (r == 0 && b != 1)
                        r = -EIO; /* a setup failed: its slot holds why */
        }
        sh->start_ns = stats_now_ns();
        sh->deadline_ns = sh->start_ns + (uint64_t)(o->seconds * 1e9);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        close(go[1]); /* go */
        go[1] = -1;
        for (int i = 0; i < started; i++) {
                int status;

                while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
                        ;
                if (slots[i].error < 0 && (r == 0 || r == -EIO))
                        r = slots[i].error;
                else if (!WIFEXITED(status) && r == 0)
                        r = -ECHILD;
        }
        *secondsp = o->seconds;
        if (r == 0)
                for (int i = 0; i < n; i++) {
                        for (uint64_t k = 0; k < slots[i].n && s->n < s->cap; k++)
                                s->ns[s->n++] = samples[(size_t)i * cap + k];
                        s->ops += slots[i].ops;
                        if (slots[i].last_ns > sh->start_ns) {
                                double took = (double)(slots[i].last_ns - sh->start_ns) / 1e9;

                                if (took > *secondsp)
                                        *secondsp = took;
                        }
                }
out:
        if (ready[0] >= 0)
                close(ready[0]);
        if (ready[1] >= 0)
                close(ready[1]);
        if (go[0] >= 0)
                close(go[0]);
        if (go[1] >= 0)
                close(go[1]);
        free(pids);
        munmap(mem, shared_len);
        return r;
}
