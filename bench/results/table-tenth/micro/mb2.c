#define _GNU_SOURCE
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>
static uint64_t now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000ull+t.tv_nsec;}
static int cmp(const void*a,const void*b){uint64_t x=*(uint64_t*)a,y=*(uint64_t*)b;return x<y?-1:x>y;}
/* one process: send a random memfd over a socketpair, F_GET_SEALS it first, receive it, close it */
int main(int argc,char**argv){
  int n=atoi(argv[1]); int iters=200000; int sv[2]; socketpair(AF_UNIX,SOCK_STREAM|SOCK_CLOEXEC,0,sv);
  int *fds=malloc(n*sizeof(int));
  for(int i=0;i<n;i++){char nm[32];snprintf(nm,32,"r%d",i);fds[i]=memfd_create(nm,MFD_CLOEXEC|MFD_ALLOW_SEALING);fcntl(fds[i],F_ADD_SEALS,F_SEAL_SHRINK|F_SEAL_GROW);}
  uint64_t *t=malloc(iters*8); uint64_t rng=0x9E3779B97F4A7C15ull;
  for(int mode=0;mode<2;mode++){
  for(int it=0;it<iters;it++){
    rng^=rng<<13;rng^=rng>>7;rng^=rng<<17; int k=fds[rng%n];
    char b[40]={0}; union{struct cmsghdr h;char c[CMSG_SPACE(sizeof(int))];}u; struct iovec io={b,sizeof b};
    struct msghdr m={.msg_iov=&io,.msg_iovlen=1,.msg_control=u.c,.msg_controllen=sizeof u.c};
    uint64_t a=now();
    if(mode==1) fcntl(k,F_GET_SEALS);
    struct cmsghdr*c=CMSG_FIRSTHDR(&m);c->cmsg_level=SOL_SOCKET;c->cmsg_type=SCM_RIGHTS;c->cmsg_len=CMSG_LEN(sizeof(int));memcpy(CMSG_DATA(c),&k,sizeof k);
    sendmsg(sv[0],&m,0);
    m.msg_controllen=sizeof u.c; recvmsg(sv[1],&m,MSG_CMSG_CLOEXEC); int f; memcpy(&f,CMSG_DATA(CMSG_FIRSTHDR(&m)),sizeof f); close(f);
    t[it]=now()-a;
  }
  qsort(t,iters,8,cmp); printf("n=%d %s send+recv+close p50 %5.0f ns\n",n,mode?"seals+":"",(double)t[iters/2]);
  }
  return 0;
}
