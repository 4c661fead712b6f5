#define _GNU_SOURCE
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(void){
 int n=1000000; int m=memfd_create("x",MFD_ALLOW_SEALING); int sv[2]; socketpair(AF_UNIX,SOCK_STREAM,0,sv);
 int ep=epoll_create1(0); struct epoll_event ev={.events=EPOLLIN};
 double t=now(); for(int i=0;i<n;i++) syscall(SYS_getppid); printf("getppid %.0f ns\n",(now()-t)/n);
 t=now(); for(int i=0;i<n;i++) fcntl(m,F_GET_SEALS); printf("F_GET_SEALS %.0f ns\n",(now()-t)/n);
 t=now(); for(int i=0;i<n;i++){int q;ioctl(sv[0],SIOCOUTQ,&q);} printf("SIOCOUTQ %.0f ns\n",(now()-t)/n);
 t=now(); for(int i=0;i<n;i++){epoll_ctl(ep,EPOLL_CTL_ADD,sv[0],&ev);epoll_ctl(ep,EPOLL_CTL_DEL,sv[0],&ev);} printf("epoll ADD+DEL %.0f ns\n",(now()-t)/n);
 t=now(); for(int i=0;i<n;i++){struct ucred u; socklen_t l=sizeof u; getsockopt(sv[0],SOL_SOCKET,SO_PEERCRED,&u,&l);} printf("SO_PEERCRED %.0f ns\n",(now()-t)/n);
 return 0;}
