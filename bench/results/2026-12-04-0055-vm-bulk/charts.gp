set terminal pngcairo size 1100,520 font 'sans,10'
set style data histogram
set style histogram errorbars gap 1.5 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set xtics rotate by -30
set output 'throughput.png'
set title 'Bulk throughput through the tunnel (iperf3)'
set ylabel 'Gbit/s (median, min-max)'
unset logscale y; set yrange [0:*]
plot 'throughput.dat' using 2:3:4:xtic(1) title '1 stream', \
     'throughput.dat' using 5:6:7 title '1 stream -R', \
     'throughput.dat' using 8:9:10 title '4 streams', \
     'throughput.dat' using 11:12:13 title '4 streams -R'
set output 'cpu.png'
set title 'CPU (user+sys) of both relays per GiB'
set ylabel 'CPU s per GiB (lower is better)'
unset logscale y; set yrange [0:*]
plot 'cpu.dat' using 2:3:4:xtic(1) title 'both relays'
