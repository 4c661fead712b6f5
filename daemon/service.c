/* service: systemd integration. Interim version with no systemd support; replaced by the systemd work. */
#include "service.h"

int service_listen_fd(int *fdp) { (void)fdp; return 0; }
int service_restore(struct regtab *t) { (void)t; return 0; }
int service_region_added(struct region *r) { (void)r; return 0; }
void service_region_changed(struct region *r) { (void)r; }
void service_region_removed(struct region *r) { (void)r; }
void service_ready(void) {}
void service_status(uint64_t regions, uint64_t bytes, uint64_t connections) { (void)regions; (void)bytes; (void)connections; }
void service_stopping(void) {}
void service_reloading(bool begin) { (void)begin; }
uint64_t service_watchdog_usec(void) { return 0; }
void service_watchdog(void) {}
