/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* spawn: start and stop a private iomemd for the benchmark, and read a process's RSS. */

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "iomem.h"
#include "spawn.h"

long spawn_raise_nofile(long want)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if ((rlim_t)want > rl.rlim_max) {
                struct rlimit up = { .rlim_cur = (rlim_t)want, .rlim_max = (rlim_t)want };

                if (setrlimit(RLIMIT_NOFILE, &up) == 0)
                        return want;
        }
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        return (long)rl.rlim_cur;
}

static void spawn_sleep_ms(long ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

        nanosleep(&ts, NULL);
}

int spawn_iomemd(const char *binary, const char *backend, const char *tmpdir, const char *const *extra,
                 struct spawn *d)
{
        struct spawn_opts o = { .binary = binary, .backend = backend, .tmpdir = tmpdir, .extra = extra };

        return spawn_iomemd_opts(&o, d);
}

int spawn_iomemd_opts(const struct spawn_opts *o, struct spawn *d)
{
        struct iomem_client *c = NULL;
        int r = -ETIMEDOUT;
        pid_t pid;

        *d = (struct spawn){ .pid = -1 };
        snprintf(d->dir, sizeof(d->dir), "/tmp/iomem-bench.XXXXXX");
        if (!mkdtemp(d->dir))
                return -errno;
        snprintf(d->socket, sizeof(d->socket), "%s/iomemd.sock", d->dir);

        pid = fork();
        if (pid < 0) {
                r = -errno;
                rmdir(d->dir);
                return r;
        }
        if (pid == 0) {
                const char *argv[20 + SPAWN_MAX_EXTRA] = { o->binary, "--socket", d->socket, "--backend", o->backend,
                                                           "--max-connections", "1000000", "--max-regions",
                                                           "2000000", "--log-level", "warning" };
                char budget[24];
                int n = 11;

                if (o->nofile > 0) {
                        /* soft and hard, as systemd's LimitNOFILE= sets them; lowering needs no privilege */
                        struct rlimit rl = { .rlim_cur = (rlim_t)o->nofile, .rlim_max = (rlim_t)o->nofile };

                        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                                fprintf(stderr, "iomem-bench: cannot set RLIMIT_NOFILE %ld for iomemd: %m\n",
                                        o->nofile);
                                _exit(126);
                        }
                        /*
                         * As the unit's CapabilityBoundingSet= (empty): without
                         * CAP_SYS_RESOURCE the daemon cannot raise its limit past
                         * this one (server_raise_nofile() would go to fs.nr_open).
                         * Fails harmlessly without CAP_SETPCAP, where there is
                         * nothing to drop anyway.
                         */
                        (void)prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
                }
                if (o->tmpdir) {
                        argv[n++] = "--tmpdir";
                        argv[n++] = o->tmpdir;
                }
                if (o->max_region_fds) {
                        snprintf(budget, sizeof(budget), "%u", o->max_region_fds);
                        argv[n++] = "--max-region-fds";
                        argv[n++] = budget;
                }
                for (int i = 0; o->extra && o->extra[i] && i < SPAWN_MAX_EXTRA; i++)
                        argv[n++] = o->extra[i]; /* after ours: the daemon takes the last value of an option */
                execv(o->binary, (char *const *)argv);
                fprintf(stderr, "iomem-bench: cannot run %s: %m\n", o->binary);
                _exit(127);
        }
        d->pid = pid;

        for (int i = 0; i < 1000; i++) {
                int status;

                if (waitpid(pid, &status, WNOHANG) == pid) {
                        d->pid = -1;
                        spawn_stop(d);
                        return -ECHILD;
                }
                r = iomem_connect(d->socket, &c);
                if (r == 0)
                        break;
                spawn_sleep_ms(10);
        }
        c = iomem_disconnect(c);
        if (r < 0)
                spawn_stop(d);
        return r;
}

void spawn_stop(struct spawn *d)
{
        if (!d)
                return;
        if (d->pid > 0) {
                int status;

                kill(d->pid, SIGTERM);
                for (int i = 0; i < 300; i++) {
                        if (waitpid(d->pid, &status, WNOHANG) == d->pid)
                                goto reaped;
                        spawn_sleep_ms(10);
                }
                kill(d->pid, SIGKILL);
                waitpid(d->pid, &status, 0);
        reaped:
                d->pid = -1;
        }
        if (d->socket[0])
                unlink(d->socket);
        if (d->dir[0])
                rmdir(d->dir);
        d->socket[0] = d->dir[0] = '\0';
}

long spawn_nofile(pid_t pid)
{
        char path[64], line[256];
        long soft = -ENOENT;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                char word[32];

                if (strncmp(line, "Max open files", 14) != 0)
                        continue;
                if (sscanf(line + 14, "%31s", word) == 1)
                        soft = strcmp(word, "unlimited") == 0 ? LONG_MAX : strtol(word, NULL, 10);
                break;
        }
        fclose(f);
        return soft;
}

int spawn_rss(pid_t pid, struct spawn_rss *rssp)
{
        char path[64], line[256];
        FILE *f;

        *rssp = (struct spawn_rss){ 0 };
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f)) {
                unsigned long long v;

                if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
                        rssp->rss_kb = v;
                else if (sscanf(line, "RssAnon: %llu kB", &v) == 1)
                        rssp->anon_kb = v;
                else if (sscanf(line, "RssFile: %llu kB", &v) == 1)
                        rssp->file_kb = v;
                else if (sscanf(line, "RssShmem: %llu kB", &v) == 1)
                        rssp->shmem_kb = v;
        }
        fclose(f);
        if (!rssp->rss_kb)
                return -EIO;
        /*
         * The daemon's fd keepers (daemon/keeper.c) are part of it: add what
         * each owns alone (Private_*; the pages they share with the daemon
         * since fork are already in its VmRSS).
         */
        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
        f = fopen(path, "re");
        if (f) {
                int child;

                while (fscanf(f, "%d", &child) == 1) {
                        char cpath[64];
                        FILE *cf;

                        snprintf(cpath, sizeof(cpath), "/proc/%d/smaps_rollup", child);
                        cf = fopen(cpath, "re");
                        if (!cf)
                                continue;
                        rssp->keepers++;
                        while (fgets(line, sizeof(line), cf)) {
                                unsigned long long v;

                                if (sscanf(line, "Private_Clean: %llu kB", &v) == 1 ||
                                    sscanf(line, "Private_Dirty: %llu kB", &v) == 1)
                                        rssp->keepers_kb += v;
                        }
                        fclose(cf);
                }
                fclose(f);
        }
        rssp->rss_kb += rssp->keepers_kb;
        return 0;
}

int spawn_pin(pid_t pid, int cpu)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cpu_set_t set;

        CPU_ZERO(&set);
        for (long i = 0; i < n && i < CPU_SETSIZE; i++)
                if (cpu < 0 || i == cpu)
                        CPU_SET((int)i, &set);
        return sched_setaffinity(pid, sizeof(set), &set) < 0 ? -errno : 0;
}

int spawn_pin_children(pid_t pid, int cpu)
{
        char path[64];
        int child, n = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fscanf(f, "%d", &child) == 1)
                if (spawn_pin(child, cpu) == 0)
                        n++;
        fclose(f);
        return n;
}
