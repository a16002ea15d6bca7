// Minimal JSON reader for the host tests (reads protocols/led-ring-vectors.json). Strings are returned as
// byte strings: \u00XX escapes become the byte 0xXX (the vectors' convention); larger code points are an
// error. Numbers must be integers.
#ifndef LEDRING_MINI_JSON_H
#define LEDRING_MINI_JSON_H

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

struct Json {
    enum Type { Null, Bool, Int, Str, Arr, Obj } type = Null;
    bool b = false;
    int64_t i = 0;
    std::string s;
    std::vector<Json> a;
    std::map<std::string, Json> o;

    bool has(const std::string &k) const { return type == Obj && o.count(k) != 0; }
    const Json &operator[](const std::string &k) const {
        if (!has(k)) throw std::runtime_error("missing key: " + k);
        return o.at(k);
    }
};

class JsonParser {
  public:
    explicit JsonParser(const std::string &text) : t_(text) {}
    Json parse() {
        Json v = value();
        ws();
        if (p_ != t_.size()) fail("trailing data");
        return v;
    }

  private:
    const std::string &t_;
    size_t p_ = 0;

    [[noreturn]] void fail(const std::string &why) {
        throw std::runtime_error("JSON error at byte " + std::to_string(p_) + ": " + why);
    }
    void ws() {
        while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\n' || t_[p_] == '\r' || t_[p_] == '\t')) p_++;
    }
    char peek() {
        ws();
        if (p_ >= t_.size()) fail("unexpected end");
        return t_[p_];
    }
    void expect(char c) {
        if (peek() != c) fail(std::string("expected ") + c);
        p_++;
    }
    bool literal(const char *word) {
        const std::string w(word);
        if (t_.compare(p_, w.size(), w) == 0) {
            p_ += w.size();
            return true;
        }
        return false;
    }
    Json value() {
        const char c = peek();
        Json v;
        if (c == '{') {
            v.type = Json::Obj;
            p_++;
            if (peek() == '}') {
                p_++;
                return v;
            }
            for (;;) {
                const std::string k = string();
                expect(':');
                v.o[k] = value();
                if (peek() == ',') {
                    p_++;
                    continue;
                }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.type = Json::Arr;
            p_++;
            if (peek() == ']') {
                p_++;
                return v;
            }
            for (;;) {
                v.a.push_back(value());
                if (peek() == ',') {
                    p_++;
                    continue;
                }
                expect(']');
                return v;
            }
        }
        if (c == '"') {
            v.type = Json::Str;
            v.s = string();
            return v;
        }
        if (literal("true")) {
            v.type = Json::Bool;
            v.b = true;
            return v;
        }
        if (literal("false")) {
            v.type = Json::Bool;
            return v;
        }
        if (literal("null")) return v;
        if (c == '-' || (c >= '0' && c <= '9')) {
            v.type = Json::Int;
            bool neg = false;
            if (t_[p_] == '-') {
                neg = true;
                p_++;
            }
            if (p_ >= t_.size() || t_[p_] < '0' || t_[p_] > '9') fail("bad number");
            while (p_ < t_.size() && t_[p_] >= '0' && t_[p_] <= '9') v.i = v.i * 10 + (t_[p_++] - '0');
            if (p_ < t_.size() && (t_[p_] == '.' || t_[p_] == 'e' || t_[p_] == 'E')) fail("only integers");
            if (neg) v.i = -v.i;
            return v;
        }
        fail("unexpected character");
    }
    std::string string() {
        expect('"');
        std::string s;
        for (;;) {
            if (p_ >= t_.size()) fail("unterminated string");
            const char c = t_[p_++];
            if (c == '"') return s;
            if (c != '\\') {
                s += c;
                continue;
            }
            if (p_ >= t_.size()) fail("bad escape");
            const char e = t_[p_++];
            switch (e) {
                case '"': s += '"'; break;
                case '\\': s += '\\'; break;
                case '/': s += '/'; break;
                case 'b': s += '\b'; break;
                case 'f': s += '\f'; break;
                case 'n': s += '\n'; break;
                case 'r': s += '\r'; break;
                case 't': s += '\t'; break;
                case 'u': {
                    if (p_ + 4 > t_.size()) fail("bad \\u escape");
                    const unsigned long cp = std::stoul(t_.substr(p_, 4), nullptr, 16);
                    p_ += 4;
                    if (cp > 0xFF) fail("code point > U+00FF in a byte string");
                    s += static_cast<char>(cp);
                    break;
                }
                default: fail("bad escape");
            }
        }
    }
};

#endif
