/* opens SOCKET create N | open FIRST COUNT TIMES [ro] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "iomem.h"
int main(int argc, char **argv)
{
        struct iomem_client *c = NULL;
        char name[32];
        int r = iomem_connect(argv[1], &c);
        if (r) { fprintf(stderr, "connect %s\n", iomem_strerror(r)); return 1; }
        if (!strcmp(argv[2], "create")) {
                for (unsigned i = 0; i < (unsigned)atoi(argv[3]); i++) {
                        struct iomem_region *reg = NULL;
                        snprintf(name, sizeof(name), "bench-r-%06u", i);
                        r = iomem_create(c, name, 0, NULL, &reg);
                        if (r == -22) r = iomem_create(c, name, 4096, NULL, &reg);
                        if (r) { fprintf(stderr, "create %s\n", iomem_strerror(r)); return 1; }
                        iomem_region_free(reg);
                }
        } else {
                unsigned first = atoi(argv[3]), count = atoi(argv[4]), times = atoi(argv[5]);
                unsigned long long rng = 0x9E3779B97F4A7C15ull;
                for (unsigned i = 0; i < times; i++) {
                        struct iomem_region *reg = NULL;
                        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                        snprintf(name, sizeof(name), "bench-r-%06u", first + (unsigned)(rng % count));
                        r = iomem_open(c, name, argc > 6 ? 1 : 0, 0, &reg);
                        if (r) { fprintf(stderr, "open %s\n", iomem_strerror(r)); return 1; }
                        iomem_region_free(reg);
                }
        }
        iomem_disconnect(c);
        return 0;
}
