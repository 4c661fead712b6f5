/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* parent-child: a parent and a forked child share one local region; each sees the other's writes. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iomem.h"

#define SIZE 1024
#define PARENT_MSG "Hello from parent!"
#define CHILD_MSG "Hello from child!"
#define CHILD_OFFSET 100

static int fail(const char *what, int r)
{
        fprintf(stderr, "parent-child: %s: %s\n", what, iomem_strerror(r));
        return EXIT_FAILURE;
}

/* The child maps the region again from the fd it inherited across fork(). */
static int child(struct iomem_region *region)
{
        char *buf;
        void *addr;
        int r;

        r = iomem_region_map(region, 0, SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0)
                return fail("child: map", r);
        buf = addr;
        printf("child received: %s\n", buf);
        if (strcmp(buf, PARENT_MSG) != 0) {
                fprintf(stderr, "parent-child: child did not see the parent's message\n");
                return EXIT_FAILURE;
        }
        memcpy(buf + CHILD_OFFSET, CHILD_MSG, sizeof(CHILD_MSG));
        iomem_unmap(addr, SIZE);
        fflush(stdout); /* the child leaves with _exit() */
        return EXIT_SUCCESS;
}

int main(void)
{
        struct iomem_region *region = NULL;
        char *buf;
        void *addr;
        pid_t pid;
        int status, r;

        r = iomem_region_new_local(SIZE, IOMEM_BACKEND_AUTO, 0, &region);
        if (r < 0)
                return fail("new region", r);
        r = iomem_region_map(region, 0, SIZE, PROT_READ | PROT_WRITE, &addr);
        if (r < 0)
                return fail("map", r);
        buf = addr;
        memcpy(buf, PARENT_MSG, sizeof(PARENT_MSG));

        fflush(stdout);
        pid = fork();
        if (pid < 0) {
                perror("parent-child: fork");
                return EXIT_FAILURE;
        }
        if (pid == 0) {
                /* drop the parent's mapping: the child must get its view from the fd alone */
                iomem_unmap(addr, SIZE);
                _exit(child(region));
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "parent-child: the child failed\n");
                return EXIT_FAILURE;
        }
        printf("parent received: %s\n", buf + CHILD_OFFSET);
        if (strcmp(buf + CHILD_OFFSET, CHILD_MSG) != 0) {
                fprintf(stderr, "parent-child: the parent did not see the child's write\n");
                return EXIT_FAILURE;
        }
        iomem_unmap(addr, SIZE);
        iomem_region_free(region);
        return EXIT_SUCCESS;
}
