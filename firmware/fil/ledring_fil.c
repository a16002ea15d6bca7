/*
 * ledring_fil: run the scopectl LED-ring firmware on simavr's ATmega328P ("firmware in the loop").
 *
 *   ledring_fil --elf build/scopectl_ledring.elf [--battery-mv 4000] [--divider 2/1] [--vref-mv 5000]
 *               [--speed 1.0]
 *
 * - The emulated UART0 is bridged to a pseudo-terminal; its path is announced on stdout. Open it with
 *   pyserial like a real board (the baud rate setting is irrelevant).
 * - Analog input A0 sees battery_mv * DEN / NUM millivolts (the board's divider), AVcc = AREF = vref.
 *   Change the battery voltage at run time with "battery <mv>" on stdin.
 * - The WS2812 signal on PD6 is decoded from the cycle times of its edges: a high phase of 200-550 ns is
 *   a 0-bit, 650-1000 ns a 1-bit, anything else is counted as a timing error; a low phase >= 50 us latches
 *   the frame. Each frame is reported with its colours (RGB, after brightness, as the LEDs show them) and
 *   the brightness the firmware applied (read from the emulated RAM at symbol `ledring_board`, offset 0).
 * - Emulated time is throttled to wall-clock time * speed (never ahead; behind only when the host machine
 *   is too slow), so the firmware's timeouts take (timeout / speed) seconds of wall-clock time or longer.
 *
 * stdout: one JSON object per line, "event" is one of
 *   ready   {"pty": path, "brightness_symbol": bool}
 *   frame   {"n", "t_ms" (emulated), "bits", "errors", "rgb" (72 hex), "grb" (wire bytes, hex),
 *            "brightness", "t0h_cycles": [min,max], "t1h_cycles": [min,max], "max_low_cycles"}
 *   battery {"mv", "pin_mv"}          acknowledges a "battery" command
 *   error   {"message"}                bad command or a problem that does not stop the emulation
 *   exit    {"reason", "state"}        the emulation stopped (stdin closed, "quit", or the CPU crashed)
 * stdin commands: "battery <mv>", "quit". EOF on stdin ends the harness (so it dies with its parent).
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_adc.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_irq.h"

#define F_CPU_HZ 16000000UL
#define NUM_LEDS 12
#define MAX_FRAME_BITS 2048
#define CYCLES_PER_US (F_CPU_HZ / 1000000UL)
#define LATCH_CYCLES (50 * CYCLES_PER_US) /* low >= 50 us ends a frame */

/* WS2812B high-phase windows in cycles at 16 MHz (62.5 ns per cycle). */
#define T0H_MIN 4  /* 250 ns */
#define T0H_MAX 8  /* 500 ns */
#define T1H_MIN 11 /* 687.5 ns */
#define T1H_MAX 16 /* 1000 ns */

static avr_t *avr;
static int pty_master = -1;
static int pty_slave = -1;

/* serial bridge */
static uint8_t to_avr[4096];
static size_t to_avr_len;
static int uart_xon = 1;
static uint8_t from_avr[65536];
static size_t from_avr_len;
static avr_irq_t *uart_input_irq;

/* battery */
static uint32_t battery_mv = 4000;
static uint32_t div_num = 2, div_den = 1;
static uint32_t vref_mv = 5000;
static avr_irq_t *adc0_irq;

/* brightness symbol in the emulated RAM */
static long bri_addr = -1;

/* WS2812 decoder */
static int pin_level;
static avr_cycle_count_t rise_cycle, fall_cycle;
static uint8_t frame_bits[MAX_FRAME_BITS];
static unsigned nbits, nerrors, frame_count;
static unsigned t0h_min, t0h_max, t1h_min, t1h_max, max_low;
static int in_frame;

/* JSON events go to the original stdout; simavr's own messages (printf) are redirected to stderr. */
static FILE *json_out;

static void emit(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(json_out, fmt, ap);
    va_end(ap);
    fputc('\n', json_out);
    fflush(json_out);
}

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

/* ------------------------------------------------------------------ ELF symbol lookup (ELF32, AVR) */
static long find_data_symbol(const char *path, const char *name) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long result = -1;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &st) != 0 || st.st_size < (off_t)sizeof(Elf32_Ehdr)) goto out;
    buf = malloc((size_t)st.st_size);
    if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) goto out;
    const Elf32_Ehdr *eh = (const Elf32_Ehdr *)buf;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS32) goto out;
    if (eh->e_shoff == 0 || eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf32_Shdr) > (uint64_t)st.st_size) goto out;
    const Elf32_Shdr *sh = (const Elf32_Shdr *)(buf + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
        const Elf32_Shdr *strs = &sh[sh[i].sh_link];
        if (sh[i].sh_offset + (uint64_t)sh[i].sh_size > (uint64_t)st.st_size ||
            strs->sh_offset + (uint64_t)strs->sh_size > (uint64_t)st.st_size)
            goto out;
        const Elf32_Sym *sym = (const Elf32_Sym *)(buf + sh[i].sh_offset);
        const size_t n = sh[i].sh_size / sizeof(Elf32_Sym);
        for (size_t k = 0; k < n; k++) {
            if (sym[k].st_name >= strs->sh_size) continue;
            const char *s = (const char *)(buf + strs->sh_offset + sym[k].st_name);
            if (strnlen(s, strs->sh_size - sym[k].st_name) == strlen(name) && strcmp(s, name) == 0 &&
                sym[k].st_value >= 0x800000) {
                result = (long)(sym[k].st_value - 0x800000); /* AVR data addresses live at 0x800000 */
                goto out;
            }
        }
    }
out:
    free(buf);
    fclose(f);
    return result;
}

/* ------------------------------------------------------------------ UART <-> pty */
static void uart_out_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    if (from_avr_len < sizeof(from_avr)) from_avr[from_avr_len++] = (uint8_t)value;
    /* a host that never reads loses output beyond 64 KiB, like a real USB-serial buffer */
}

static void uart_xon_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)value;
    (void)param;
    uart_xon = 1;
}

static void uart_xoff_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)value;
    (void)param;
    uart_xon = 0;
}

static void push_to_avr(void) {
    size_t i = 0;
    while (uart_xon && i < to_avr_len) avr_raise_irq(uart_input_irq, to_avr[i++]);
    memmove(to_avr, to_avr + i, to_avr_len - i);
    to_avr_len -= i;
}

static void pump_pty(void) {
    if (to_avr_len < sizeof(to_avr)) {
        ssize_t r = read(pty_master, to_avr + to_avr_len, sizeof(to_avr) - to_avr_len);
        if (r > 0) to_avr_len += (size_t)r;
    }
    push_to_avr();
    if (from_avr_len) {
        ssize_t w = write(pty_master, from_avr, from_avr_len);
        if (w > 0) {
            memmove(from_avr, from_avr + w, from_avr_len - (size_t)w);
            from_avr_len -= (size_t)w;
        }
    }
}

/* ------------------------------------------------------------------ battery */
static void apply_battery(void) {
    uint32_t pin = (uint32_t)(((uint64_t)battery_mv * div_den) / div_num);
    avr_raise_irq(adc0_irq, pin);
}

/* ------------------------------------------------------------------ WS2812 decoder */
static void frame_reset(void) {
    nbits = nerrors = 0;
    t0h_min = t1h_min = 0xFFFFFFFFu;
    t0h_max = t1h_max = max_low = 0;
    in_frame = 0;
}

static avr_cycle_count_t latch_cb(struct avr_t *a, avr_cycle_count_t when, void *param) {
    (void)a;
    (void)param;
    char rgb[NUM_LEDS * 6 + 1] = {0}, grb[MAX_FRAME_BITS / 4 + 1] = {0};
    unsigned nbytes = nbits / 8;
    uint8_t bytes[MAX_FRAME_BITS / 8] = {0};
    for (unsigned i = 0; i < nbytes * 8; i++) bytes[i / 8] = (uint8_t)((bytes[i / 8] << 1) | frame_bits[i]);
    for (unsigned i = 0; i < nbytes; i++) sprintf(grb + 2 * i, "%02X", bytes[i]);
    for (unsigned led = 0; led < NUM_LEDS; led++) {
        uint8_t g = 0, r = 0, b = 0;
        if (3 * led + 2 < nbytes) {
            g = bytes[3 * led];
            r = bytes[3 * led + 1];
            b = bytes[3 * led + 2];
        }
        sprintf(rgb + 6 * led, "%02X%02X%02X", r, g, b);
    }
    int bri = bri_addr >= 0 ? avr->data[bri_addr] : -1;
    frame_count++;
    emit("{\"event\":\"frame\",\"n\":%u,\"t_ms\":%.3f,\"bits\":%u,\"errors\":%u,\"rgb\":\"%s\",\"grb\":\"%s\","
         "\"brightness\":%d,\"t0h_cycles\":[%u,%u],\"t1h_cycles\":[%u,%u],\"max_low_cycles\":%u}",
         frame_count, (double)when / (CYCLES_PER_US * 1000.0), nbits, nerrors + (nbits % 8 ? 1u : 0u), rgb, grb,
         bri, t0h_min == 0xFFFFFFFFu ? 0 : t0h_min, t0h_max, t1h_min == 0xFFFFFFFFu ? 0 : t1h_min, t1h_max,
         max_low);
    frame_reset();
    return 0;
}

static void pin_cb(struct avr_irq_t *irq, uint32_t value, void *param) {
    (void)irq;
    (void)param;
    const int level = value ? 1 : 0;
    if (level == pin_level) return;
    pin_level = level;
    const avr_cycle_count_t now = avr->cycle;
    if (level) {
        if (in_frame) {
            const unsigned low = (unsigned)(now - fall_cycle);
            if (low > max_low) max_low = low;
        }
        in_frame = 1;
        rise_cycle = now;
        avr_cycle_timer_cancel(avr, latch_cb, NULL);
        return;
    }
    fall_cycle = now;
    const unsigned high = (unsigned)(now - rise_cycle);
    int bit = -1;
    if (high >= T0H_MIN && high <= T0H_MAX) {
        bit = 0;
        if (high < t0h_min) t0h_min = high;
        if (high > t0h_max) t0h_max = high;
    } else if (high >= T1H_MIN && high <= T1H_MAX) {
        bit = 1;
        if (high < t1h_min) t1h_min = high;
        if (high > t1h_max) t1h_max = high;
    }
    if (bit < 0)
        nerrors++;
    else if (nbits < MAX_FRAME_BITS)
        frame_bits[nbits++] = (uint8_t)bit;
    else
        nerrors++;
    avr_cycle_timer_register(avr, LATCH_CYCLES, latch_cb, NULL);
}

/* ------------------------------------------------------------------ control channel (stdin) */
static char ctl_buf[256];
static size_t ctl_len;
static int quit_requested;
static const char *quit_reason = "quit";

static void handle_command(char *line) {
    char *end;
    if (strncmp(line, "battery ", 8) == 0) {
        errno = 0;
        unsigned long mv = strtoul(line + 8, &end, 10);
        if (errno || end == line + 8 || *end || mv > 100000) {
            emit("{\"event\":\"error\",\"message\":\"bad battery value\"}");
            return;
        }
        battery_mv = (uint32_t)mv;
        apply_battery();
        emit("{\"event\":\"battery\",\"mv\":%u,\"pin_mv\":%u}", battery_mv,
             (uint32_t)(((uint64_t)battery_mv * div_den) / div_num));
    } else if (strcmp(line, "quit") == 0) {
        quit_requested = 1;
    } else if (line[0]) {
        emit("{\"event\":\"error\",\"message\":\"unknown command\"}");
    }
}

static void pump_stdin(void) {
    ssize_t r = read(STDIN_FILENO, ctl_buf + ctl_len, sizeof(ctl_buf) - ctl_len);
    if (r == 0) {
        quit_requested = 1;
        quit_reason = "stdin closed";
        return;
    }
    if (r < 0) return;
    ctl_len += (size_t)r;
    for (;;) {
        char *nl = memchr(ctl_buf, '\n', ctl_len);
        if (!nl) break;
        *nl = 0;
        handle_command(ctl_buf);
        size_t used = (size_t)(nl - ctl_buf) + 1;
        memmove(ctl_buf, ctl_buf + used, ctl_len - used);
        ctl_len -= used;
    }
    if (ctl_len == sizeof(ctl_buf)) ctl_len = 0; /* over-long garbage line */
}

/* ------------------------------------------------------------------ main */
static void no_sleep(avr_t *a, avr_cycle_count_t how_long) {
    (void)a;
    (void)how_long; /* throttling is done in the main loop */
}

static void usage(void) {
    fprintf(stderr, "usage: ledring_fil --elf FILE [--battery-mv MV] [--divider NUM/DEN] [--vref-mv MV] [--speed X]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *elf = NULL;
    double speed = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--elf") && i + 1 < argc)
            elf = argv[++i];
        else if (!strcmp(argv[i], "--battery-mv") && i + 1 < argc)
            battery_mv = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--divider") && i + 1 < argc) {
            if (sscanf(argv[++i], "%u/%u", &div_num, &div_den) != 2 || !div_num || !div_den) usage();
        } else if (!strcmp(argv[i], "--vref-mv") && i + 1 < argc)
            vref_mv = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--speed") && i + 1 < argc) {
            speed = strtod(argv[++i], NULL);
            if (!(speed > 0.0 && speed <= 1000.0)) usage();
        } else
            usage();
    }
    if (!elf) usage();
    signal(SIGPIPE, SIG_IGN);
    const int json_fd = dup(STDOUT_FILENO);
    json_out = json_fd >= 0 ? fdopen(json_fd, "w") : NULL;
    if (!json_out || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) return 1;

    elf_firmware_t fw;
    memset(&fw, 0, sizeof(fw));
    if (elf_read_firmware(elf, &fw) != 0) {
        emit("{\"event\":\"exit\",\"reason\":\"cannot read firmware ELF\",\"state\":-1}");
        return 1;
    }
    strcpy(fw.mmcu, "atmega328p");
    fw.frequency = F_CPU_HZ;
    fw.vcc = fw.avcc = fw.aref = vref_mv;
    avr = avr_make_mcu_by_name(fw.mmcu);
    if (!avr) {
        emit("{\"event\":\"exit\",\"reason\":\"simavr has no atmega328p\",\"state\":-1}");
        return 1;
    }
    avr_init(avr);
    avr->log = 0;
    avr_load_firmware(avr, &fw);
    avr->sleep = no_sleep;
    bri_addr = find_data_symbol(elf, "ledring_board");

    /* UART0: no console echo, no poll-sleep, bridge to the pty */
    uint32_t flags = 0;
    avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags);
    flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    uart_input_irq = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), uart_out_cb, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), uart_xon_cb, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), uart_xoff_cb, NULL);

    adc0_irq = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0);
    apply_battery();

    frame_reset();
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 6), pin_cb, NULL);

    pty_master = posix_openpt(O_RDWR | O_NOCTTY);
    if (pty_master < 0 || grantpt(pty_master) || unlockpt(pty_master)) {
        emit("{\"event\":\"exit\",\"reason\":\"cannot create a pty\",\"state\":-1}");
        return 1;
    }
    const char *slave_name = ptsname(pty_master);
    pty_slave = open(slave_name, O_RDWR | O_NOCTTY); /* keep one slave fd open: no EIO between host opens */
    struct termios tio;
    if (pty_slave < 0 || tcgetattr(pty_slave, &tio)) {
        emit("{\"event\":\"exit\",\"reason\":\"cannot open the pty slave\",\"state\":-1}");
        return 1;
    }
    cfmakeraw(&tio);
    tcsetattr(pty_slave, TCSANOW, &tio);
    fcntl(pty_master, F_SETFL, fcntl(pty_master, F_GETFL) | O_NONBLOCK);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    emit("{\"event\":\"ready\",\"pty\":\"%s\",\"brightness_symbol\":%s}", slave_name, bri_addr >= 0 ? "true" : "false");

    const uint64_t start = now_us();
    int state = cpu_Running;
    while (!quit_requested) {
        pump_stdin();
        pump_pty();
        /* run until emulated time is 1 ms ahead of (scaled) wall-clock time */
        const double real_us = (double)(now_us() - start) * speed;
        const avr_cycle_count_t target = (avr_cycle_count_t)((real_us + 1000.0) * CYCLES_PER_US);
        for (int n = 0; n < 200000 && avr->cycle < target; n++) {
            state = avr_run(avr);
            if (state == cpu_Done || state == cpu_Crashed) break;
            if ((n & 1023) == 1023) push_to_avr();
        }
        if (state == cpu_Done || state == cpu_Crashed) {
            emit("{\"event\":\"exit\",\"reason\":\"cpu %s\",\"state\":%d}", state == cpu_Done ? "stopped" : "crashed",
                 state);
            return 1;
        }
        if (avr->cycle >= target) {
            struct pollfd pfd[2] = {{STDIN_FILENO, POLLIN, 0}, {pty_master, POLLIN, 0}};
            poll(pfd, from_avr_len ? 1 : 2, 1);
        }
    }
    pump_pty();
    emit("{\"event\":\"exit\",\"reason\":\"%s\",\"state\":%d}", quit_reason, state);
    return 0;
}
