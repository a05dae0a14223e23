// A small, fully specified random generator (SplitMix64 seeding xoshiro256**),
// so initialisation and data order are identical on every platform and
// standard library for a given seed. std::normal_distribution is not.
#pragma once

#include <cmath>
#include <cstdint>

namespace crucible {

class Rng {
public:
    explicit Rng(uint64_t seed = 0) { reseed(seed); }

    void reseed(uint64_t seed)
    {
        uint64_t x = seed;
        for (auto& s : m_state) s = splitmix(x);
        m_has_spare = false;
    }

    uint64_t next_u64()
    {
        const uint64_t result = rotl(m_state[1] * 5, 7) * 9;
        const uint64_t t = m_state[1] << 17;
        m_state[2] ^= m_state[0];
        m_state[3] ^= m_state[1];
        m_state[1] ^= m_state[2];
        m_state[0] ^= m_state[3];
        m_state[2] ^= t;
        m_state[3] = rotl(m_state[3], 45);
        return result;
    }

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }

    // Uniform integer in [0, n), unbiased (rejection).
    uint64_t below(uint64_t n)
    {
        if (n <= 1) return 0;
        const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        uint64_t r;
        do r = next_u64(); while (r >= limit);
        return r % n;
    }

    // Standard normal (Box–Muller, both values used).
    double normal()
    {
        if (m_has_spare) { m_has_spare = false; return m_spare; }
        double u1;
        do u1 = uniform(); while (u1 <= 0.0);
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        m_spare = r * std::sin(2.0 * M_PI * u2);
        m_has_spare = true;
        return r * std::cos(2.0 * M_PI * u2);
    }

    // State for checkpoints (bit-exact resume).
    struct State { uint64_t s[4]; bool has_spare; double spare; };
    State state() const { return {{m_state[0], m_state[1], m_state[2], m_state[3]}, m_has_spare, m_spare}; }
    void set_state(const State& st)
    {
        for (int i = 0; i < 4; ++i) m_state[i] = st.s[i];
        m_has_spare = st.has_spare;
        m_spare = st.spare;
    }

private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static uint64_t splitmix(uint64_t& x)
    {
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    uint64_t m_state[4]{};
    bool m_has_spare = false;
    double m_spare = 0.0;
};

} // namespace crucible
