// ATmega328P (16 MHz) platform for the scopectl LED-ring firmware: UART, 1 ms timer, ADC, watchdog reboot.
// Bare avr-libc, no Arduino core. The WS2812 output routine is in ws2812_avr.cpp.
#if defined(__AVR__)

#include "platform_avr.h"

#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/wdt.h>
#include <util/atomic.h>

#include "ledring_platform.h"

#ifndef F_CPU
#error "F_CPU must be defined (16000000UL)"
#endif
#if F_CPU != 16000000UL
#error "the WS2812 routine is cycle-timed for 16 MHz"
#endif

// After a watchdog reset the watchdog stays enabled with its shortest period: switch it off before
// anything else runs (avr-libc's recommended .init3 hook).
extern "C" void ledring_wdt_off(void) __attribute__((naked, used, section(".init3")));
extern "C" void ledring_wdt_off(void) {
    MCUSR = 0;
    wdt_disable();
}

namespace {

// Receive ring buffer. Bit 8 of an entry marks "bytes were lost before this one" (UART data overrun or a
// full ring); the main loop turns it into ledring_rx_lost() so the affected line is answered with BUSY.
const uint8_t kRxSize = 64;  // power of two
volatile uint16_t rx_ring[kRxSize];
volatile uint8_t rx_head;  // written by the ISR
volatile uint8_t rx_tail;  // written by the main loop
volatile bool rx_dropped;  // the ring was full: mark the next stored byte
volatile uint32_t millis_count;

}  // namespace

ISR(USART_RX_vect) {
    const uint8_t status = UCSR0A;
    const uint8_t byte = UDR0;
    uint16_t entry = byte;
    if ((status & (1 << DOR0)) || rx_dropped) entry |= 0x100;
    const uint8_t next = static_cast<uint8_t>((rx_head + 1) & (kRxSize - 1));
    if (next == rx_tail) {
        rx_dropped = true;  // full: this byte is lost
        return;
    }
    rx_dropped = false;
    rx_ring[rx_head] = entry;
    rx_head = next;
}

ISR(TIMER2_COMPA_vect) { millis_count = millis_count + 1; }

void avr_platform_init(void) {
    // NeoPixel data pin PD6 (Arduino 6): output, low.
    PORTD &= static_cast<uint8_t>(~(1 << PD6));
    DDRD |= (1 << PD6);
    // UART 115200 8N1, double speed: UBRR = 16 (error +2.1 %, as the Arduino core uses).
    UCSR0A = (1 << U2X0);
    UBRR0H = 0;
    UBRR0L = 16;
    UCSR0C = (1 << UCSZ01) | (1 << UCSZ00);
    UCSR0B = (1 << RXEN0) | (1 << TXEN0) | (1 << RXCIE0);
    // Timer2, CTC, clk/64, OCR2A = 249: 16 MHz / 64 / 250 = 1000 Hz.
    TCCR2A = (1 << WGM21);
    TCCR2B = (1 << CS22);
    OCR2A = 249;
    TIMSK2 = (1 << OCIE2A);
    // ADC: reference AVcc, channel A0, clk/128 = 125 kHz.
    ADMUX = (1 << REFS0);
    ADCSRA = (1 << ADEN) | (1 << ADPS2) | (1 << ADPS1) | (1 << ADPS0);
    DIDR0 = (1 << ADC0D);
}

bool avr_rx_pending(void) { return rx_head != rx_tail; }

bool avr_rx_take(uint8_t *byte, bool *lost_before) {
    if (rx_head == rx_tail) return false;
    const uint16_t entry = rx_ring[rx_tail];
    rx_tail = static_cast<uint8_t>((rx_tail + 1) & (kRxSize - 1));
    *byte = static_cast<uint8_t>(entry & 0xFF);
    *lost_before = (entry & 0x100) != 0;
    return true;
}

uint32_t plat_millis(void) {
    uint32_t ms;
    ATOMIC_BLOCK(ATOMIC_RESTORESTATE) { ms = millis_count; }
    return ms;
}

void plat_write(const uint8_t *data, uint8_t len) {
    while (len--) {
        while (!(UCSR0A & (1 << UDRE0))) {
        }
        UCSR0A = static_cast<uint8_t>((UCSR0A & (1 << U2X0)) | (1 << TXC0));  // clear "transmit complete"
        UDR0 = *data++;
    }
}

uint16_t plat_adc_read_a0(void) {
    ADCSRA |= (1 << ADSC);
    while (ADCSRA & (1 << ADSC)) {
    }
    return ADC;
}

void plat_reboot(void) {
    // let the reply leave the shift register, then reset through the watchdog
    while (!(UCSR0A & (1 << UDRE0))) {
    }
    while (!(UCSR0A & (1 << TXC0))) {
    }
    cli();
    wdt_enable(WDTO_15MS);
    for (;;) {
    }
}

#endif  // __AVR__
