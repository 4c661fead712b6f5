#define _GNU_SOURCE
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
#include <sys/resource.h>
static uint64_t now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000ull+t.tv_nsec;}
static int cmp(const void*a,const void*b){uint64_t x=*(uint64_t*)a,y=*(uint64_t*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int n=atoi(argv[1]); int iters=200000;
  int p[2]; pipe(p);
  int *fds=malloc(n*sizeof(int));
  for(int i=0;i<n;i++){char nm[32];snprintf(nm,32,"r%d",i);fds[i]=memfd_create(nm,MFD_CLOEXEC|MFD_ALLOW_SEALING);}
  pid_t pid=fork();
  if(pid==0){pause();_exit(0);}
  int pidfd=syscall(SYS_pidfd_open,pid,0);
  uint64_t *t=malloc(iters*8); uint64_t rng=0x9E3779B97F4A7C15ull;
  const char*names[]={"getfd+close","getfd+fstat+close","dup+close","fstat(own)","getpid","getfd+seals+close","getfd+fstat+seals+close","seals(own)"};
  for(int mode=0;mode<8;mode++){
    for(int it=0;it<iters;it++){
      rng^=rng<<13;rng^=rng>>7;rng^=rng<<17; int k=fds[rng%n]; struct stat st;
      uint64_t a=now(); int f;
      switch(mode){
      case 0: f=syscall(SYS_pidfd_getfd,pidfd,k,0); close(f); break;
      case 1: f=syscall(SYS_pidfd_getfd,pidfd,k,0); fstat(f,&st); close(f); break;
      case 2: f=fcntl(k,F_DUPFD_CLOEXEC,3); close(f); break;
      case 3: fstat(k,&st); break;
      case 4: syscall(SYS_getpid); break;
      case 5: f=syscall(SYS_pidfd_getfd,pidfd,k,0); fcntl(f,F_GET_SEALS); close(f); break;
      case 6: f=syscall(SYS_pidfd_getfd,pidfd,k,0); fstat(f,&st); fcntl(f,F_GET_SEALS); close(f); break;
      case 7: fcntl(k,F_GET_SEALS); break;
      }
      t[it]=now()-a;
    }
    qsort(t,iters,8,cmp);
    printf("n=%d %-20s p50 %5.0f ns p90 %5.0f\n",n,names[mode],(double)t[iters/2],(double)t[iters*9/10]);
  }
  kill(pid,SIGKILL); waitpid(pid,0,0); return 0;
}
