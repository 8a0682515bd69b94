set terminal pngcairo size 1100,520 font 'sans,10'
set style data histogram
set style histogram errorbars gap 1.5 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set xtics rotate by -30
set output 'latency.png'
set title 'Time to first echoed byte under load (concurrency 50 and 500)'
set ylabel 'ms, log scale (lower is better)'
set logscale y; set yrange [0.01:*]
plot 'latency.dat' using 2:3:4:xtic(1) title 'p50 @50', \
     'latency.dat' using 5:6:7 title 'p99 @50', \
     'latency.dat' using 8:9:10 title 'p50 @500', \
     'latency.dat' using 11:12:13 title 'p99 @500'
set terminal pngcairo size 1500,560 font 'sans,10'
set output 'conn_setup.png'
set multiplot layout 1,2
set title 'Short connections/s (connect, 64 B echoed, close)'
set ylabel 'connections/s (median, min-max)'
unset logscale y; set yrange [0:*]
plot 'conn_setup_rate.dat' using 2:3:4:xtic(1) title 'c=1', \
     'conn_setup_rate.dat' using 5:6:7 title 'c=50', \
     'conn_setup_rate.dat' using 8:9:10 title 'c=500'

set title 'Time to first echoed byte, one connection at a time'
set ylabel 'ms, log scale (median, min-max; lower is better)'
set logscale y; set yrange [0.01:*]
plot 'conn_setup_latency.dat' using 2:3:4:xtic(1) title 'p50', \
     'conn_setup_latency.dat' using 5:6:7 title 'p99'

unset multiplot
